"""AudioCaps reader: caption CSVs plus whatever audio the user has, headers only.

AudioCaps distributes captions only (`{train,val,test}.csv`, header
`audiocap_id,youtube_id,start_time,caption`); the audio is 10 s of a YouTube video that each user
obtains themselves, and local copies usually miss 5-10% of the clips. Missing audio is therefore
the normal case: every clip without a file becomes one `Reject(reason="missing audio")` (its path
is the name the primary file-name template would give, with `*` for the extension), and the scan
goes on with what exists.

Captions CSVs are looked up at `ROOT/<split>.csv` or `ROOT/dataset/<split>.csv` (a clone of the
AudioCaps repository). Rows are grouped into clips by (youtube_id, start_time): train has one
caption per clip, val and test five.

Audio layouts, first existing folder per split wins:
  ROOT/audio/<split>/     e.g. ROOT/audio/train/abc123_30.flac
  ROOT/<split>/           e.g. ROOT/val/abc123_30.wav
  ROOT/audio/             all splits in one flat folder
where <split> is `train`, `val` (or `valid`, `validation`) and `test`.

File names, tried in order (a user template passed as `name_template` is tried first):
  {youtube_id}_{start_time}.{ext}     abc123_30.flac (the common downloaders' form)
  {audiocap_id}.{ext}                 91139.wav (any of the clip's audiocap ids)
  Y{youtube_id}.{ext}                 Yabc123.wav (AudioSet's form)
  {youtube_id}.{ext}                  abc123.ogg
with `{ext}` one of flac, wav, ogg, at any sample rate and channel count. Template fields:
youtube_id, start_time (as written in the CSV), end_time (start_time + 10), audiocap_id, ext.
YouTube ids may begin with "-" (about 2,400 do): names are matched exactly, never parsed.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Sequence

from teminal.pipeline.progress import progress_bar

from teminal.pipeline.sources.base import Reject, SourceClip, SourceScan, sanitize_id
from teminal.pipeline.sources.captioned import (
    AUDIO_EXTENSIONS, AudioIndex, distinct_captions, first_dir, iter_templates, probed_clip,
    read_csv, retrieval_items, row_reject, split_plan,
)
from teminal.pipeline.sources.spec import DatasetSpec, RemoteDataset, RemoteFile

DATASET = "audiocaps"
HEADER = ("audiocap_id", "youtube_id", "start_time", "caption")
SPLITS = ("train", "val", "test")
SPLIT_ALIASES = {"train": "train", "val": "val", "valid": "val", "validation": "val", "test": "test"}
AUDIO_DIR_NAMES = {"train": ("train",), "val": ("val", "valid", "validation"), "test": ("test",)}
DEFAULT_NAME_TEMPLATES = (
    "{youtube_id}_{start_time}.{ext}",
    "{audiocap_id}.{ext}",
    "Y{youtube_id}.{ext}",
    "{youtube_id}.{ext}",
)
CLIP_SECONDS = 10
MISSING_AUDIO = "missing audio"
CSV_URL = "https://raw.githubusercontent.com/cdjkim/audiocaps/master/dataset"
HOW_TO_GET = ("AudioCaps distributes captions only: `pipeline download audiocaps-captions` "
              "fetches them (into data/audiocaps, or $TEMINAL_DATA/audiocaps: where `pipeline "
              "build --dataset audiocaps` looks without --root), and `pipeline download "
              "audiocaps` explains how to obtain the audio and where to put it (clips without "
              "audio are rejected as \"missing audio\" and the build uses the rest).")

__all__ = ["SPEC", "scan", "retrieval_items", "csv_path", "audio_dir", "DEFAULT_NAME_TEMPLATES",
           "HEADER", "SPLITS", "MISSING_AUDIO"]


def csv_path(root: Path | str, split: str) -> Path | None:
    root = Path(root)
    return next((p for p in (root / f"{split}.csv", root / "dataset" / f"{split}.csv")
                 if p.is_file()), None)


def audio_dir(root: Path | str, split: str) -> Path | None:
    """The folder holding `split`'s audio, by the layouts above; None if there is none."""
    root = Path(root)
    names = AUDIO_DIR_NAMES[split]
    folder = first_dir([root / "audio" / n for n in names] + [root / n for n in names])
    if folder is not None:
        return folder
    # the flat layout only when ROOT/audio is not split into per-split folders
    flat = root / "audio"
    split_dirs = [flat / n for names_ in AUDIO_DIR_NAMES.values() for n in names_]
    return flat if flat.is_dir() and not any(p.is_dir() for p in split_dirs) else None


def layout_problem(root) -> str | None:
    """Why `root` is not an AudioCaps folder (None when it holds a captions CSV)."""
    if any(csv_path(root, s) for s in SPLITS):
        return None
    return f"no AudioCaps captions CSV (train.csv, val.csv, test.csv) under {root}"


def check_splits(root, splits) -> None:
    """Unknown split names of --splits are refused before any work (see split_plan)."""
    split_plan(splits, SPLIT_ALIASES, DATASET)


def scan(root, splits=None, name_template: str | None = None, *,
         extensions: Sequence[str] = AUDIO_EXTENSIONS, progress: bool = True) -> SourceScan:
    """Clips of AudioCaps under `root` whose audio exists, and a Reject for every other row.

    splits: None (every split whose CSV exists), a list of "train", "val", "test", or the
      builder's mapping pipeline split -> AudioCaps split(s), e.g. {"train": ["train", "val"]}.
    name_template: an extra file-name form tried before the defaults, e.g. "{youtube_id}.{ext}".
    Raises ValueError when no CSV is found, a requested split has no CSV, or a CSV's header is
    not AudioCaps'."""
    root = Path(os.path.abspath(root))  # absolute and without ".." (not resolving links)
    plan = split_plan(splits, SPLIT_ALIASES, DATASET)
    templates = list(iter_templates([name_template, *DEFAULT_NAME_TEMPLATES]))
    for t in templates:
        _check_template(t)
    found = {source: csv_path(root, source) for _, source in (plan or [(s, s) for s in SPLITS])}
    if plan is not None:
        absent = [s for s, path in found.items() if path is None]
        if absent:
            raise ValueError(f"AudioCaps: no captions CSV for split(s) {', '.join(absent)} under "
                             f"{root} (looked for <split>.csv and dataset/<split>.csv); fetch them "
                             f"with `pipeline download audiocaps-captions {root}`")
    elif not any(found.values()):
        raise ValueError(f"AudioCaps: no train.csv, val.csv or test.csv under {root}; fetch them "
                         f"with `pipeline download audiocaps-captions {root}`")

    out = SourceScan()
    seen_ids: set[str] = set()
    for split, source in plan or [(s, s) for s in SPLITS if found[s] is not None]:
        _scan_split(root, split, source, found[source], templates, tuple(extensions), out,
                    seen_ids, progress)
    return out


def _scan_split(root: Path, split: str, source: str, path: Path, templates: list[str],
                extensions: tuple, out: SourceScan, seen_ids: set[str], progress: bool) -> None:
    """Rows of `source`'s CSV (an AudioCaps split) become clips of pipeline split `split`."""
    rows, _encoding = read_csv(path, HEADER)
    clips: dict[tuple[str, str], dict] = {}
    for row in rows:
        problem = row.problem or _row_problem(row.fields)
        if problem:
            out.rejects.append(row_reject(path, row, problem, DATASET))
            continue
        audiocap_id, youtube_id, start_time, caption = (f.strip() for f in row.fields)
        clip = clips.setdefault((youtube_id, start_time), {"ids": [], "captions": []})
        clip["ids"].append(audiocap_id)
        clip["captions"].append(caption)

    folder = audio_dir(root, source)
    index = AudioIndex(folder)
    expected_dir = folder or root / "audio" / source
    found: list[SourceClip] = []
    for (youtube_id, start_time), clip in clips.items():
        fields = _fields(youtube_id, start_time)
        audio = _find(index, templates, fields, clip["ids"], extensions) if len(index) else None
        if audio is None:
            expected = templates[0].format(**fields, audiocap_id=clip["ids"][0], ext="*")
            out.rejects.append(Reject(path=str(expected_dir / expected), reason=MISSING_AUDIO,
                                      dataset=DATASET, phase="scan"))
            continue
        found.append(SourceClip(
            source_id=_source_id(youtube_id, start_time, split, seen_ids), dataset=DATASET,
            path=audio, split=split, captions=tuple(clip["captions"])))

    for clip in progress_bar(len(found), f"audiocaps {split} headers", "file",
                             enabled=progress and len(found) >= 500, iterable=found, leave=False):
        probed = probed_clip(clip, out.rejects)
        if probed is not None:
            out.clips.append(probed)


def _row_problem(fields: list[str]) -> str | None:
    if len(fields) != len(HEADER):
        return f"expected {len(HEADER)} fields ({','.join(HEADER)}), got {len(fields)}"
    audiocap_id, youtube_id, start_time, caption = (f.strip() for f in fields)
    if not youtube_id:
        return "empty youtube_id"
    if not caption:
        return "empty caption"
    try:
        float(start_time)
    except ValueError:
        return f"start_time {start_time!r} is not a number of seconds"
    return None


def _fields(youtube_id: str, start_time: str) -> dict:
    try:
        end = float(start_time) + CLIP_SECONDS
        end_time = str(int(end)) if end.is_integer() else str(end)
    except ValueError:
        end_time = ""
    return {"youtube_id": youtube_id, "start_time": start_time, "end_time": end_time}


def _find(index: AudioIndex, templates: list[str], fields: dict, audiocap_ids: list[str],
          extensions: tuple) -> str | None:
    for template in templates:
        ids = audiocap_ids if "{audiocap_id" in template else audiocap_ids[:1]
        for audiocap_id in ids:
            for ext in extensions:
                hit = index.find(template.format(**fields, audiocap_id=audiocap_id, ext=ext))
                if hit is not None:
                    return hit
    return None


def _check_template(template: str) -> None:
    try:
        template.format(youtube_id="x", start_time="0", end_time="10", audiocap_id="1", ext="wav")
    except (KeyError, IndexError, ValueError) as e:
        raise ValueError(f"AudioCaps file-name template {template!r} is invalid ({e}); use the "
                         f"fields {{youtube_id}}, {{start_time}}, {{end_time}}, {{audiocap_id}}, "
                         f"{{ext}}") from None
    if "/" in template or "\\" in template:
        raise ValueError(f"AudioCaps file-name template {template!r} names a path; it must be a "
                         f"file name inside the split's audio folder")


def _source_id(youtube_id: str, start_time: str, split: str, seen: set[str]) -> str:
    sid = "audiocaps-" + sanitize_id(f"{youtube_id}_{start_time}")
    if sid in seen:  # only when sanitising merged two keys, or one key sits in two splits
        digest = hashlib.sha1(f"{split}/{youtube_id}/{start_time}".encode()).hexdigest()[:8]
        sid = f"{sid}-{digest}"
    seen.add(sid)
    return sid


AUDIOCAPS_HELP = """\
AudioCaps audio cannot be downloaded in bulk: every clip is 10 s of a YouTube video, and the
dataset's authors distribute only the captions. To use AudioCaps:

  1. Fetch the captions:      pipeline download audiocaps-captions {dest}
  2. Obtain the audio yourself, under YouTube's terms (for example by requesting the copy the
     AudioCaps authors share on request, or with a YouTube downloader for the clips you may
     use), and cut each clip to [start_time, start_time + 10 s].
  3. Place the files in one of these layouts (the first existing folder per split is used):
       {dest}/audio/<split>/   {dest}/<split>/   {dest}/audio/   (flat, all splits)
     with <split> = train, val (or valid, validation), test, named in one of these forms:
       {{youtube_id}}_{{start_time}}.{{ext}}   e.g. -0Gj8-vB1q4_30.flac
       {{audiocap_id}}.{{ext}}                 e.g. 91139.wav
       Y{{youtube_id}}.{{ext}}                 e.g. Y-0Gj8-vB1q4.wav
       {{youtube_id}}.{{ext}}                  e.g. -0Gj8-vB1q4.ogg
     where ext is flac, wav or ogg, at any sample rate; any other form can be given to the reader
     as a template (fields youtube_id, start_time, end_time, audiocap_id, ext).
  4. Build from what you have: pipeline build --dataset audiocaps --root {dest} --out OUT ...
     Clips without audio are recorded as rejects with reason "missing audio" (5-10% of clips are
     usually missing); nothing else is needed.
"""


def how_to_get_audio(dest=None) -> str:
    """`pipeline download audiocaps [DEST]`: how to obtain the audio and where to put it."""
    return AUDIOCAPS_HELP.format(dest=dest if dest is not None else "DEST")


# Captions only, from the AudioCaps repository. No checksums are published: the computed
# SHA-256 is printed and recorded by `pipeline download`.
CAPTIONS = RemoteDataset(
    "audiocaps-captions", tuple(
        RemoteFile(f"{split}.csv", f"{CSV_URL}/{split}.csv", f"{split}.csv",
                   header="audiocap_id,youtube_id,start_time,caption")
        for split in ("train", "val", "test")))

# Captioned: clips carry captions and no label; a pair joins two clips whose captions do not
# already describe each other (captioned.near_duplicate).
SPEC = DatasetSpec(
    name=DATASET, module=__name__, env_subdir="audiocaps", fallback_root="data/audiocaps",
    how_to_get=HOW_TO_GET, layout_problem=layout_problem, compatible=distinct_captions,
    check_splits=check_splits,
    scan_options=("name_template",), remote=CAPTIONS, manual_download=how_to_get_audio,
    retrieval=True)
