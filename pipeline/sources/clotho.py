"""Clotho reader (v1 and v2.1): caption CSVs and the audio files they name, headers only.

Splits: development -> train, validation -> val (v2.1 only), evaluation -> test.

Captions: `clotho_captions_<split>.csv`, header `file_name,caption_1,...,caption_5`, looked up in
`ROOT/clotho_csv_files/` (the official layout) or `ROOT/`. They are decoded as UTF-8 when that
succeeds and as ISO-8859-1 otherwise (the Clotho README gives ISO-8859-1 for its metadata
files; a Latin-1 file with accents is never valid UTF-8, so the order is safe). The v1 files in
`../shared/data/clotho` are pure ASCII: both decodings give the same text and no mojibake.
Names there still carry HTML entities (`rain&amp;storm.wav`, `I&#39;m`), which are kept as
written. The `clotho_metadata_*.csv` files (keywords, licences) are not read: a scan needs only
names and captions.

Audio: `ROOT/clotho_audio_files/<split>/` (official) or `ROOT/<split>/`, with <split> the
dataset's own name (development, validation, evaluation). File names are Freesound titles with
spaces, dots, commas, colons and non-ASCII letters and are matched exactly, never parsed: first
the name as written, then with HTML entities decoded, then with UTF-8-read-as-Latin-1 mojibake
repaired; each in Unicode NFC, and the folder's names are NFC-normalised too, so an NFD name
written by macOS matches an NFC name in the CSV. A copy converted to another format is found
under the same stem with .flac/.wav/.ogg; `name_template` (fields {file_name}, {stem}, {ext})
adds one more form, tried first.

source_id: "clotho-" + sanitised stem (at most 48 characters) + "-" + the first 8 hex digits of
the SHA-1 of the NFC file name, because distinct names sanitise to the same text
("Car Keys.wav" and "Car_Keys.wav" are both in development).
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Sequence

from teminal.pipeline.progress import progress_bar

from teminal.pipeline.sources.base import Reject, SourceClip, SourceScan, sanitize_id
from teminal.pipeline.sources.captioned import (
    AUDIO_EXTENSIONS, AudioIndex, distinct_captions, first_dir, iter_templates, nfc, probed_clip,
    read_csv, retrieval_items, row_reject, split_plan, unescaped_variants,
)
from teminal.pipeline.sources.spec import DatasetSpec, RemoteDataset, RemoteFile

DATASET = "clotho"
HEADER = ("file_name", "caption_1", "caption_2", "caption_3", "caption_4", "caption_5")
SPLITS = ("train", "val", "test")
CLOTHO_SPLITS = {"train": "development", "val": "validation", "test": "evaluation"}
SPLIT_ALIASES = {
    "train": "train", "development": "train", "dev": "train",
    "val": "val", "validation": "val", "valid": "val",
    "test": "test", "evaluation": "test", "eval": "test",
}
DEFAULT_NAME_TEMPLATES = ("{file_name}", "{stem}.{ext}")
MISSING_AUDIO = "missing audio"
STEM_CHARS = 48
RECORD_URL = "https://zenodo.org/records/4783391/files"     # Clotho v2.1 on Zenodo
HOW_TO_GET = ("Get Clotho v2.1 (captions and audio) with `pipeline download clotho` (into "
              "data/clotho, or $TEMINAL_DATA/clotho: where `pipeline build --dataset clotho` "
              "looks without --root), or point --root at a copy holding clotho_csv_files/ and "
              "clotho_audio_files/<split>/.")

__all__ = ["SPEC", "scan", "retrieval_items", "captions_csv", "audio_dir", "source_id", "HEADER",
           "SPLITS", "CLOTHO_SPLITS", "MISSING_AUDIO"]


def captions_csv(root: Path | str, split: str) -> Path | None:
    root, name = Path(root), f"clotho_captions_{CLOTHO_SPLITS[split]}.csv"
    return next((p for p in (root / "clotho_csv_files" / name, root / name) if p.is_file()), None)


def audio_dir(root: Path | str, split: str) -> Path | None:
    root, name = Path(root), CLOTHO_SPLITS[split]
    return first_dir([root / "clotho_audio_files" / name, root / name])


def source_id(file_name: str) -> str:
    name = nfc(file_name)
    stem = _stem(name)
    digest = hashlib.sha1(name.encode("utf-8")).hexdigest()[:8]
    return f"clotho-{sanitize_id(stem)[:STEM_CHARS].strip('_')}-{digest}"


def layout_problem(root) -> str | None:
    """Why `root` is not a Clotho folder (None when it holds a captions CSV)."""
    if any(captions_csv(root, s) for s in SPLITS):
        return None
    return f"no Clotho captions CSV (clotho_captions_<split>.csv) under {root} or {root}/clotho_csv_files"


def check_splits(root, splits) -> None:
    """Unknown split names of --splits are refused before any work (see split_plan)."""
    split_plan(splits, SPLIT_ALIASES, DATASET)


def scan(root, splits=None, name_template: str | None = None, *,
         extensions: Sequence[str] = AUDIO_EXTENSIONS, progress: bool = True) -> SourceScan:
    """Clips of Clotho under `root` whose audio exists, and a Reject for every other row.

    splits: None (every split whose captions CSV exists: v1 has no validation), a list of
      "train"/"val"/"test" (Clotho's own names are accepted too), or the builder's mapping
      pipeline split -> Clotho split(s), e.g. {"train": ["development"], "test": ["evaluation"]}.
    Raises ValueError when no captions CSV is found, a requested split has none, or a CSV's
    header is not Clotho's."""
    root = Path(os.path.abspath(root))  # absolute and without ".." (not resolving links)
    plan = split_plan(splits, SPLIT_ALIASES, DATASET)
    templates = list(iter_templates([name_template, *DEFAULT_NAME_TEMPLATES]))
    for t in templates:
        _check_template(t)
    found = {source: captions_csv(root, source) for _, source in (plan or [(s, s) for s in SPLITS])}
    if plan is not None:
        absent = [CLOTHO_SPLITS[s] for s, path in found.items() if path is None]
        if absent:
            raise ValueError(
                f"Clotho: no captions CSV for {', '.join(absent)} under {root} (looked for "
                f"clotho_csv_files/clotho_captions_<split>.csv and clotho_captions_<split>.csv; "
                f"Clotho v1 has no validation split); fetch them with `pipeline download clotho {root}`")
    elif not any(found.values()):
        raise ValueError(f"Clotho: no clotho_captions_*.csv under {root} or {root}/clotho_csv_files; "
                         f"fetch them with `pipeline download clotho {root}`")

    out = SourceScan()
    seen_ids: set[str] = set()
    for split, source in plan or [(s, s) for s in SPLITS if found[s] is not None]:
        _scan_split(root, split, source, found[source], templates, tuple(extensions), out,
                    seen_ids, progress)
    return out


def _scan_split(root: Path, split: str, source: str, path: Path, templates: list[str],
                extensions: tuple, out: SourceScan, seen_ids: set[str], progress: bool) -> None:
    """Rows of `source`'s CSV (a Clotho split) become clips of pipeline split `split`."""
    rows, _encoding = read_csv(path, HEADER)
    folder = audio_dir(root, source)
    index = AudioIndex(folder)
    expected_dir = folder or root / "clotho_audio_files" / CLOTHO_SPLITS[source]
    first_line: dict[str, int] = {}
    found: list[SourceClip] = []
    for row in rows:
        if row.problem or len(row.fields) != len(HEADER):
            out.rejects.append(row_reject(path, row, row.problem or f"expected {len(HEADER)} "
                                          f"fields ({','.join(HEADER)}), got {len(row.fields)}",
                                          DATASET))
            continue
        file_name = row.fields[0].strip()
        captions = tuple(c.strip() for c in row.fields[1:] if c.strip())
        if not file_name:
            out.rejects.append(row_reject(path, row, "empty file_name", DATASET))
            continue
        if not captions:
            out.rejects.append(row_reject(path, row, f"no caption for {file_name!r}", DATASET))
            continue
        key = nfc(file_name)
        if key in first_line:
            out.rejects.append(row_reject(
                path, row, f"duplicate file_name {file_name!r} (first at line {first_line[key]})",
                DATASET))
            continue
        first_line[key] = row.line

        audio = _find(index, templates, file_name, extensions) if len(index) else None
        if audio is None:
            out.rejects.append(Reject(path=str(expected_dir / file_name), reason=MISSING_AUDIO,
                                      dataset=DATASET, phase="scan"))
            continue
        sid = source_id(file_name)
        if sid in seen_ids:  # the same name in two splits
            sid = f"{sid}-{split}"
        seen_ids.add(sid)
        found.append(SourceClip(source_id=sid, dataset=DATASET, path=audio,
                                split=split, captions=captions))

    for clip in progress_bar(len(found), f"clotho {split} headers", "file",
                             enabled=progress and len(found) >= 500, iterable=found, leave=False):
        probed = probed_clip(clip, out.rejects)
        if probed is not None:
            out.clips.append(probed)


def _find(index: AudioIndex, templates: list[str], file_name: str, extensions: tuple) -> str | None:
    for name in unescaped_variants(file_name):
        stem = _stem(name)
        for template in templates:
            exts = extensions if "{ext" in template else ("",)
            for ext in exts:
                hit = index.find(template.format(file_name=name, stem=stem, ext=ext))
                if hit is not None:
                    return hit
    return None


def _stem(name: str) -> str:
    """The name without its audio extension; other dots belong to the title."""
    base, dot, ext = name.rpartition(".")
    return base if dot and ext.lower() in AUDIO_EXTENSIONS else name


def _check_template(template: str) -> None:
    try:
        template.format(file_name="x.wav", stem="x", ext="wav")
    except (KeyError, IndexError, ValueError) as e:
        raise ValueError(f"Clotho file-name template {template!r} is invalid ({e}); use the "
                         f"fields {{file_name}}, {{stem}}, {{ext}}") from None


def _remote() -> RemoteDataset:
    # MD5s of Zenodo record 4783391 (Clotho v2.1), as the record lists them.
    audio = {"development": "c8b05bc7acdb13895bb3c6a29608667e",
             "validation": "7dba730be08bada48bd15dc4e668df59",
             "evaluation": "4569624ccadf96223f19cb59fe4f849f"}
    captions = {"development": "d4090b39ce9f2491908eebf4d5b09bae",
                "validation": "5879e023032b22a2c930aaa0528bead4",
                "evaluation": "1b16b9e57cf7bdb7f13a13802aeb57e2"}
    metadata = {"development": "170d20935ecfdf161ce1bb154118cda5",
                "validation": "2e010427c56b1ce6008b0f03f41048ce",
                "evaluation": "13946f054d4e1bf48079813aac61bf77"}
    files = []
    for split in ("development", "validation", "evaluation"):
        name = f"clotho_captions_{split}.csv"
        files.append(RemoteFile(name, f"{RECORD_URL}/{name}?download=1",
                                f"clotho_csv_files/{name}", md5=captions[split],
                                header=",".join(HEADER)))
        name = f"clotho_metadata_{split}.csv"
        files.append(RemoteFile(name, f"{RECORD_URL}/{name}?download=1",
                                f"clotho_csv_files/{name}", md5=metadata[split]))
    for split in ("evaluation", "validation", "development"):  # smallest first
        name = f"clotho_audio_{split}.7z"
        files.append(RemoteFile(name, f"{RECORD_URL}/{name}?download=1",
                                f"clotho_audio_files/{split}", kind="7z", md5=audio[split]))
    return RemoteDataset(DATASET, tuple(files))


# Captioned (see audiocaps.SPEC). Splits are Clotho's development/validation/evaluation as
# train/val/test; --splits maps them otherwise, e.g. train=train,val;test=test.
SPEC = DatasetSpec(
    name=DATASET, module=__name__, env_subdir="clotho", fallback_root="data/clotho",
    how_to_get=HOW_TO_GET, layout_problem=layout_problem, compatible=distinct_captions,
    check_splits=check_splits,
    scan_options=("name_template",), remote=_remote(), retrieval=True)
