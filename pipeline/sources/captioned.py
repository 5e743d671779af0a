"""Helpers shared by the captioned-clip readers (AudioCaps, Clotho).

- CSV reading with a strict header check, an encoding fallback and per-row line numbers.
- An index of an audio folder that matches file names exactly, in both Unicode normal forms.
- Header probing of found files (never decoding them).
- Pure functions used when composing pairs of captioned clips:
  `near_duplicate(a, b)` and `caption_for_slot(clip, rng)`.
- `retrieval_items(scan)`: the test split in the form `evaluate retrieval` reads.

A part longer than its slot in a composite is cut by the pipeline's rule
(`teminal.pipeline.audio.highest_energy_window`, the window with the most energy), the same
rule as for ESC-50; nothing here decides that.
"""
from __future__ import annotations

import csv
import dataclasses
import functools
import html
import io
import os
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Mapping, Sequence

from teminal.pipeline.audio import read_header
from teminal.pipeline.sources.base import AudioError, Reject, SourceClip, SourceScan

AUDIO_EXTENSIONS = ("flac", "wav", "ogg")

# Captions CSVs: UTF-8 first (AudioCaps ships UTF-8, Clotho v2.1 may), then ISO-8859-1, which
# decodes any byte string. Latin-1 text with accents is almost never valid UTF-8, so trying
# UTF-8 first cannot mis-decode a Latin-1 file; the reverse order would turn UTF-8 accents
# into mojibake ("Ã©").
CSV_ENCODINGS = ("utf-8-sig", "iso-8859-1")


# ---------------------------------------------------------------------------------------------
# CSV

# The longest field a metadata CSV may hold (csv's own default), set for every read rather than
# taken from the process-wide setting another library may have raised: a longer field (a 1 MB
# "caption") makes its row a reject naming the line, the same on every machine.
CSV_FIELD_LIMIT = 131072


@dataclass(frozen=True)
class CsvRow:
    line: int                # 1-based line number of the row's last physical line in the file
    fields: list[str]
    problem: str | None = None   # set (and fields empty) when the row could not be parsed


def parse_csv(text: str) -> list[CsvRow]:
    """Every row of a CSV text, blank lines included. A row the csv module cannot parse (a
    field over CSV_FIELD_LIMIT characters) is kept as a CsvRow with its `problem`, and parsing
    goes on with the next line."""
    rows: list[CsvRow] = []
    old_limit = csv.field_size_limit(CSV_FIELD_LIMIT)
    try:
        # StringIO(newline=""), not splitlines(): captions may hold U+2028 or form feeds, which
        # splitlines() would take for line ends
        reader = csv.reader(io.StringIO(text, newline=""))
        while True:
            line = reader.line_num
            try:
                fields = next(reader)
            except StopIteration:
                break
            except csv.Error as e:
                if reader.line_num == line:   # nothing consumed: cannot go on
                    raise ValueError(f"line {line + 1}: {e}") from None
                rows.append(CsvRow(reader.line_num, [], _csv_problem(e)))
                continue
            rows.append(CsvRow(reader.line_num, fields))
    finally:
        csv.field_size_limit(old_limit)
    return rows


def _csv_problem(e: csv.Error) -> str:
    if "field limit" in str(e):
        return f"a field longer than {CSV_FIELD_LIMIT} characters"
    return f"unreadable CSV row ({e})"


def read_csv(path: Path, expected_header: Sequence[str]) -> tuple[list[CsvRow], str]:
    """Rows of a CSV whose first line must be `expected_header`; returns (rows, encoding).
    Unparseable rows come back with their `problem` (the reader makes them rejects).

    A wrong or unreadable header raises ValueError naming the file, the header found and the
    one expected: that is a wrong file or a wrong dataset, not a bad row."""
    raw = Path(path).read_bytes()
    text, encoding = decode_text(raw)
    try:
        parsed = parse_csv(text)
    except ValueError as e:
        raise ValueError(f"{path}: cannot be read as CSV ({e})") from None
    header = parsed[0] if parsed else CsvRow(0, [])
    if header.problem:
        raise ValueError(f"{path}: the header line cannot be read ({header.problem}); is this "
                         f"the right file for this dataset?")
    found = [h.strip() for h in header.fields]
    if found != list(expected_header):
        shown = ",".join(found) or "(empty file)"
        raise ValueError(f"{path}: header {shown} is not the expected {','.join(expected_header)}; "
                         f"is this the right file for this dataset?")
    rows = [r for r in parsed[1:] if r.problem or not _blank(r.fields)]
    return rows, encoding


def _blank(fields: list[str]) -> bool:
    return not fields or (len(fields) == 1 and not fields[0].strip())


def decode_text(raw: bytes) -> tuple[str, str]:
    for encoding in CSV_ENCODINGS:
        try:
            return raw.decode(encoding), encoding
        except UnicodeDecodeError:
            continue
    raise AssertionError("unreachable: ISO-8859-1 decodes every byte string")


def row_reject(csv_path: Path, row: CsvRow, problem: str, dataset: str) -> Reject:
    return Reject(path=f"{csv_path}:{row.line}", reason=f"malformed row at line {row.line}: {problem}",
                  dataset=dataset, phase="scan")


# ---------------------------------------------------------------------------------------------
# Audio folders

def nfc(name: str) -> str:
    return unicodedata.normalize("NFC", name)


class AudioIndex:
    """The regular files of one folder (not recursive), looked up by exact name.

    macOS writes names in NFD and most CSVs hold NFC, so names are matched on their NFC form;
    nothing else is folded (case, spaces and punctuation must match exactly)."""

    def __init__(self, folder: Path | None):
        self.folder = folder
        self._by_name: dict[str, str] = {}
        if folder is not None and folder.is_dir():
            with os.scandir(folder) as it:
                for entry in it:
                    if entry.is_file():
                        # first one wins if a folder holds both forms of one name
                        self._by_name.setdefault(nfc(entry.name), entry.path)

    def __len__(self) -> int:
        return len(self._by_name)

    def find(self, name: str) -> str | None:
        return self._by_name.get(nfc(name))


def first_dir(candidates: Sequence[Path]) -> Path | None:
    return next((p for p in candidates if p.is_dir()), None)


def probe(path: str) -> tuple[int, float]:
    """(sample_rate, duration in seconds) from the header; raises AudioError (the reason)."""
    sample_rate, _channels, frames = read_header(path)
    return sample_rate, frames / sample_rate


def probed_clip(clip: SourceClip, rejects: list[Reject]) -> SourceClip | None:
    """`clip` with rate and duration filled in from its header, or None and a Reject."""
    try:
        sample_rate, duration = probe(clip.path)
    except AudioError as e:
        rejects.append(Reject(path=clip.path, reason=str(e), dataset=clip.dataset, phase="scan"))
        return None
    return dataclasses.replace(clip, sample_rate=sample_rate, duration=duration)


# ---------------------------------------------------------------------------------------------
# Splits

PIPELINE_SPLITS = ("train", "val", "test")


def split_plan(splits, aliases: dict[str, str], dataset: str) -> list[tuple[str, str]] | None:
    """[(pipeline split, dataset split)] from what a caller asked for; None means every split
    present, each under its own name.

    `splits` is None, a list ("train", "test"; the dataset's own names such as "development"
    are accepted too), a comma-separated string, or the builder's mapping pipeline split ->
    dataset split(s), e.g. {"train": ["development"], "test": ["evaluation"]}. Dataset splits
    come back as pipeline names ("development" -> "train"); each may feed one split only."""
    if splits is None:
        return None

    def resolve(name) -> str:
        key = aliases.get(str(name).strip().lower())
        if key is None:
            raise ValueError(f"{dataset}: unknown split {name!r}; choose from "
                             f"{', '.join(sorted(set(aliases)))}")
        return key

    if isinstance(splits, str):
        splits = [s for s in splits.split(",") if s.strip()]
    if isinstance(splits, Mapping):
        plan = []
        for out, units in splits.items():
            if out not in PIPELINE_SPLITS:
                raise ValueError(f"{dataset}: split {out!r} is not one of {', '.join(PIPELINE_SPLITS)}")
            for unit in ([units] if isinstance(units, str) else list(units)):
                plan.append((out, resolve(unit)))
    else:
        plan = [(resolve(s), resolve(s)) for s in splits]
    owners: dict[str, str] = {}
    unique = []
    for out, source in plan:
        if source in owners and owners[source] != out:
            raise ValueError(f"{dataset}: split {source!r} is assigned to both {owners[source]!r} "
                             f"and {out!r}; a clip must belong to one split")
        if source not in owners:
            owners[source] = out
            unique.append((out, source))
    return unique


# ---------------------------------------------------------------------------------------------
# Composition helpers

NEAR_DUPLICATE_JACCARD = 0.5

# Function words and words that describe every sound ("sound", "noise", "someone") carry no
# information about which event a caption names.
_STOPWORDS = frozenset("""
a an the and or but nor of in on at to from by with without into onto over under through
as while then than after before during followed later next again also is are was were be been
being it its this that these those there here some something someone somebody several many
much more most other another one two three few lot lots very quite too so just only still
up down out off away back about around near nearby far distance distant background foreground
sound sounds noise noises can could may might will would his her their them they he she we you
loud loudly soft softly quiet quietly while briefly continuously repeatedly constantly
""".split())
_WORD = re.compile(r"[a-z]+")


@functools.lru_cache(maxsize=65536)
def content_words(caption: str) -> frozenset[str]:
    """Lower-cased, crudely stemmed words of a caption without stop words.

    The stemmer only strips plural and verb endings ("barks", "barking", "barked" -> "bark") so
    that the same event written in two tenses matches."""
    words = set()
    for w in _WORD.findall(caption.lower()):
        if w in _STOPWORDS or len(w) < 3:
            continue
        words.add(_stem(w))
    return frozenset(words)


def _stem(w: str) -> str:
    for suffix in ("ing", "ed", "es", "s"):
        if w.endswith(suffix) and len(w) - len(suffix) >= 3:
            w = w[: -len(suffix)]
            break
    if len(w) >= 4 and w[-1] == w[-2]:  # "running" -> "runn" -> "run"
        w = w[:-1]
    return w


def near_duplicate(a: SourceClip, b: SourceClip, threshold: float = NEAR_DUPLICATE_JACCARD) -> bool:
    """True when the two clips' captions already describe each other, so a pair of them would
    make a composite whose order or overlap cannot be told from its caption.

    Rule (any caption of `a` against any caption of `b`, on content words):
      - the same clip, or
      - Jaccard similarity of the two content-word sets >= `threshold` (0.5), or
      - one set contained in the other ("A dog barks" vs "A dog barks as a man speaks": the
        second already contains the first event).
    Captions with no content word never match. Clips without captions fall back to their label
    (equal labels are near-duplicates)."""
    if a.source_id == b.source_id:
        return True
    caps_a, caps_b = _texts(a), _texts(b)
    for ca in caps_a:
        wa = content_words(ca)
        if not wa:
            continue
        for cb in caps_b:
            wb = content_words(cb)
            if not wb:
                continue
            inter = len(wa & wb)
            if inter == len(wa) or inter == len(wb):
                return True
            if inter / len(wa | wb) >= threshold:
                return True
    return False


def distinct_captions(a: SourceClip, b: SourceClip) -> bool:
    """The pairing rule for captioned datasets (`compatible(a, b)` of `pairing.draw_pairs`)."""
    return not near_duplicate(a, b)


def _texts(clip: SourceClip) -> tuple[str, ...]:
    if clip.captions:
        return clip.captions
    return (clip.label,) if clip.label else ()


def canonical_caption(clip: SourceClip) -> str:
    """The clip's first caption (the dataset's first column), or its label."""
    texts = _texts(clip)
    if not texts:
        raise ValueError(f"{clip.source_id}: clip has neither captions nor a label")
    return texts[0].strip()


def caption_for_slot(clip: SourceClip, rng=None) -> str:
    """Which of the clip's captions stands for it in a composite.

    With `rng` None: the canonical (first) caption. Otherwise one caption drawn uniformly with
    `rng` (a numpy Generator or a random.Random); exactly one number is drawn per call, whatever
    the number of captions, so a recipe's random stream does not depend on caption counts."""
    texts = _texts(clip)
    if not texts:
        raise ValueError(f"{clip.source_id}: clip has neither captions nor a label")
    if rng is None:
        return texts[0].strip()
    # one uniform double, not integers(n): numpy draws nothing for integers(1)
    i = min(int(rng.random() * len(texts)), len(texts) - 1)
    return texts[i].strip()


# ---------------------------------------------------------------------------------------------
# Retrieval

def retrieval_items(scan: SourceScan, split: str = "test") -> list[tuple[str, str, tuple[str, ...]]]:
    """(source_id, path, captions) of every captioned clip of `split`, in scan order: the
    audio-text retrieval set (AudioCaps test, Clotho evaluation)."""
    return [(c.source_id, c.path, tuple(c.captions)) for c in scan.clips
            if c.split == split and c.captions]


def iter_templates(templates: Sequence[str]) -> Iterator[str]:
    seen = set()
    for t in templates:
        if t and t not in seen:
            seen.add(t)
            yield t


def unescaped_variants(name: str) -> list[str]:
    """The name as written, then with HTML entities decoded (Clotho v1 CSVs hold names such as
    "rain&amp;storm.wav" while some extracted copies are named "rain&storm.wav"), then with
    UTF-8-read-as-Latin-1 mojibake repaired."""
    out = [name]
    un = html.unescape(name)
    if un != name:
        out.append(un)
    for n in list(out):
        try:
            fixed = n.encode("iso-8859-1").decode("utf-8")
        except (UnicodeEncodeError, UnicodeDecodeError):
            continue
        if fixed != n:
            out.append(fixed)
    return out
