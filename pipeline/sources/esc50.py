"""ESC-50 reader: the official layout (`audio/*.wav` + `meta/esc50.csv`), real or synthetic.

A scan reads the CSV and each file's header only; decoding happens later, once, in the builder.
Every row that cannot become a clip is a `Reject(phase="scan")` with a reason, never an exception;
only a folder that is not ESC-50 at all (no root, no CSV, wrong CSV header) raises.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

from teminal.pipeline.audio import read_header
from teminal.pipeline.sources.base import AudioError, Reject, SourceClip, SourceScan, sanitize_id
from teminal.pipeline.sources.spec import DatasetSpec, RemoteDataset, RemoteFile

DATASET = "esc50"
SYNTHETIC_DATASET = "esc50-synthetic"
SYNTHETIC_MARKER = "SYNTHETIC.md"
CSV_PATH = Path("meta") / "esc50.csv"
OFFICIAL_HEADER = ("filename", "fold", "target", "category", "esc10", "src_file", "take")
REQUIRED_COLUMNS = ("filename", "fold", "target", "category")
OFFICIAL_FOLDS = (1, 2, 3, 4, 5)
DEFAULT_SPLITS: dict[str, list[int]] = {"test": [5], "val": [4], "train": [1, 2, 3]}

ZIP_URL = "https://github.com/karolpiczak/ESC-50/archive/master.zip"
HOW_TO_GET = ("Get ESC-50 from https://github.com/karolpiczak/ESC-50: `pipeline download esc50` "
              "puts it where `pipeline build` looks without --root (data/ESC-50-master, or "
              "$TEMINAL_DATA/esc50 when TEMINAL_DATA is set); a clone or unzipped copy elsewhere "
              "is read with --root DIR. Or write the clearly-labelled synthetic stand-in and "
              "build from it: `pipeline synth esc50 data/esc50-synthetic` then "
              "`pipeline build --root data/esc50-synthetic ...`.")


def resolve_root(root) -> Path:
    """The dataset folder: `root` itself or its `ESC-50-master` child, whichever holds the CSV."""
    root = Path(root).expanduser()
    if not root.exists():
        raise FileNotFoundError(f"ESC-50 root {str(root)!r} does not exist. {HOW_TO_GET}")
    for candidate in (root, root / "ESC-50-master"):
        if (candidate / CSV_PATH).is_file():
            return candidate
    raise FileNotFoundError(f"{layout_problem(root)}. {HOW_TO_GET}")


def layout_problem(root) -> str | None:
    """Why `root` is not an ESC-50 folder (None when it or its ESC-50-master child is one)."""
    root = Path(root)
    if any((c / CSV_PATH).is_file() for c in (root, root / "ESC-50-master")):
        return None
    return (f"{str(root)!r} is not an ESC-50 folder: no {CSV_PATH.as_posix()} in it or in its "
            "ESC-50-master child")


def is_synthetic(root) -> bool:
    return (Path(root) / SYNTHETIC_MARKER).is_file()


def fold_to_split(splits: dict[str, list[int]] | None) -> dict[int, str]:
    """Invert {split: folds}; a fold in two splits would leak clips between them, so it raises."""
    splits = DEFAULT_SPLITS if splits is None else splits
    owner: dict[int, str] = {}
    for split, folds in splits.items():
        for fold in folds:
            fold = int(fold)
            if fold in owner:
                raise ValueError(f"fold {fold} is in both split {owner[fold]!r} and {split!r}; "
                                 "a source clip must belong to exactly one split")
            owner[fold] = split
    return owner


def scan(root, splits: dict[str, list[int]] | None = None) -> SourceScan:
    """Clips of an ESC-50 folder (labels from the CSV category, "_" -> " "), with rejects.

    `splits` maps split name -> folds (default: test 5, val 4, train 1-3). Folds 1-5 that no
    split names are left out silently (the caller chose so); other fold numbers are rejects."""
    folder = resolve_root(root)
    synthetic = is_synthetic(folder)
    dataset = SYNTHETIC_DATASET if synthetic else DATASET
    prefix = "esc50synth-" if synthetic else "esc50-"
    owner = fold_to_split(splits)
    csv_file = folder / CSV_PATH
    audio_dir = (folder / "audio").absolute()

    result = SourceScan(synthetic=synthetic)
    seen: dict[str, int] = {}  # filename -> CSV line of its first row

    def reject(path: str, reason: str) -> None:
        result.rejects.append(Reject(path=path, reason=reason, dataset=dataset, phase="scan"))

    for line, row, unparsed in _read_rows(csv_file):
        where = f"{CSV_PATH.as_posix()} line {line}"
        name = (row.get("filename") or "").strip()
        path = str(audio_dir / name) if name else f"{csv_file}:{line}"
        problem = unparsed or _row_problem(row, name)
        if problem:
            reject(path, f"malformed CSV row ({where}): {problem}")
            continue
        if name in seen:
            reject(path, f"duplicate filename ({where}; first listed on line {seen[name]})")
            continue
        seen[name] = line
        fold = int(row["fold"])
        if fold not in owner:
            if fold not in OFFICIAL_FOLDS:
                reject(path, f"malformed CSV row ({where}): fold {fold} is not an ESC-50 fold "
                             f"(1-5) and no split names it")
            continue
        try:
            sample_rate, _, frames = read_header(path)
        except AudioError as e:
            reject(path, str(e))
            continue
        result.clips.append(SourceClip(
            source_id=prefix + source_stem(name),
            dataset=dataset,
            path=path,
            split=owner[fold],
            fold=fold,
            label=label_of(row["category"]),
            sample_rate=sample_rate,
            duration=frames / sample_rate,
        ))
    result.clips.sort(key=lambda c: c.source_id)
    return result


def check_splits(root, splits: dict[str, list[int]] | None) -> None:
    """Refuse, before any work, a --splits that names a split other than train/val/test or a
    fold no clip of the CSV is in, and a default layout that leaves a split without a pair
    (clips of two classes) in a partial copy; the message names the folds there and a layout.
    Reads the CSV only."""
    csv_file = resolve_root(root) / CSV_PATH
    per_fold: dict[int, list[str]] = {}
    for _line, row, unparsed in _read_rows(csv_file):
        if not unparsed and _row_problem(row, (row.get("filename") or "").strip()) is None:
            per_fold.setdefault(int(row["fold"]), []).append(label_of(row["category"]))
    if splits is None:
        _check_default_layout(per_fold, csv_file)
    else:
        for split, folds in splits.items():
            _check_named_split(split, [int(f) for f in folds], per_fold, csv_file)


def _check_named_split(split: str, folds: list[int], per_fold: dict, csv_file: Path) -> None:
    if split not in SPLIT_NAMES:
        raise ValueError(f"--splits {split}=...: split {split!r} is not one of "
                         f"{', '.join(SPLIT_NAMES)} (trainers read train, evaluators test)")
    if not folds:
        raise ValueError(f"--splits {split}=: name the fold(s) of split {split!r}; the folds of "
                         f"{csv_file} are {', '.join(map(str, sorted(per_fold))) or 'none'}")
    # an official fold a partial copy lacks is fine beside others ("train=1,2,3,4,5" means
    # everything there is); a fold no ESC-50 has, or a split of absent folds only, is not
    absent = [f for f in folds if f not in per_fold]
    unknown = [f for f in absent if f not in OFFICIAL_FOLDS]
    if unknown or len(absent) == len(folds):
        raise ValueError(
            f"--splits {split}={','.join(map(str, folds))}: no clip of {csv_file} is in fold "
            f"{', '.join(map(str, unknown or absent))}; its folds are "
            f"{', '.join(map(str, sorted(per_fold))) or 'none'}")


def _check_default_layout(per_fold: dict[int, list[str]], csv_file: Path) -> None:
    for split, folds in DEFAULT_SPLITS.items():
        labels = [label for f in folds for label in per_fold.get(f, [])]
        if len(set(labels)) < 2:
            raise ValueError(
                f"the default splits ({_layout(DEFAULT_SPLITS)}) leave split {split} without a "
                f"pair: fold {','.join(map(str, folds))} of {csv_file} holds {_clips(labels)}, "
                f"and a pair needs two classes. Clips per fold here: {_fold_counts(per_fold)}. "
                f"Choose folds with --splits, e.g. --splits {_layout(suggest_splits(per_fold))}")


SPLIT_NAMES = ("train", "val", "test")


def suggest_splits(per_fold: dict[int, list[str]]) -> dict[str, list[int]]:
    """A layout for a partial copy: the smallest folds that hold two classes become test (and
    val), every other fold train; with one such fold, everything trains."""
    pairable = sorted((f for f, labels in per_fold.items() if len(set(labels)) >= 2),
                      key=lambda f: (len(per_fold[f]), f))
    held = {"test": pairable[:1], "val": pairable[1:2]} if len(pairable) >= 3 else \
        {"test": pairable[:1]} if len(pairable) == 2 else {}
    taken = {f for folds in held.values() for f in folds}
    return {**held, "train": sorted(f for f in per_fold if f not in taken)}


def _layout(splits: dict[str, list[int]]) -> str:
    return ",".join(f"{s}={','.join(map(str, folds))}" for s, folds in splits.items())


def _fold_counts(per_fold: dict[int, list[str]]) -> str:
    return "; ".join(f"{f}: {_clips(labels)}" for f, labels in sorted(per_fold.items())) or "none"


def _clips(labels: list[str]) -> str:
    n, k = len(labels), len(set(labels))
    return f"{n} clip{'s' if n != 1 else ''} of {k} class{'es' if k != 1 else ''}"


def label_of(category: str) -> str:
    return category.strip().replace("_", " ")


def source_stem(filename: str) -> str:
    """A sanitised id for a file name; altered names get a short hash so they cannot collide."""
    stem = Path(filename).stem
    clean = sanitize_id(stem)
    if clean != stem:
        clean = f"{clean}-{hashlib.sha1(filename.encode('utf-8')).hexdigest()[:8]}"
    return clean


def _read_rows(csv_file: Path):
    """(line number, row dict as csv.DictReader makes it, problem) for each data row; problem
    is set (and the row empty) when the line cannot be parsed. A wrong header raises up front."""
    # the captioned readers' fallback (UTF-8, then ISO-8859-1), so a CSV saved in another
    # encoding is read instead of failing with a decode error naming no file; and their parser,
    # which turns a row the csv module refuses (a 1 MB field) into a problem of that row
    from teminal.pipeline.sources.captioned import decode_text, parse_csv

    try:
        text, _encoding = decode_text(csv_file.read_bytes())
        parsed = parse_csv(text)
    except OSError as e:
        raise FileNotFoundError(f"{csv_file}: cannot read the CSV ({e.strerror or e})") from None
    except ValueError as e:
        raise ValueError(f"{csv_file}: cannot be read as CSV ({e})") from None
    first = parsed[0] if parsed else None
    if first is not None and first.problem:
        raise ValueError(f"{csv_file}: the header line cannot be read ({first.problem}); expected "
                         f"the official ESC-50 header {','.join(OFFICIAL_HEADER)}")
    header = [h.strip() for h in (first.fields if first else [])]
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        raise ValueError(
            f"{csv_file}: CSV header {','.join(header) or '(empty)'} lacks column(s) "
            f"{', '.join(missing)}; expected the official ESC-50 header "
            f"{','.join(OFFICIAL_HEADER)}")
    for row in parsed[1:]:
        if row.problem:
            yield row.line, {}, row.problem
            continue
        fields = dict(zip(header, row.fields))
        if len(row.fields) > len(header):
            fields[None] = row.fields[len(header):]
        fields.update({h: None for h in header[len(row.fields):]})
        if not any((v or "").strip() for k, v in fields.items() if k is not None):
            continue  # blank line
        yield row.line, fields, None


def _row_problem(row: dict, name: str) -> str | None:
    if None in row:
        return f"{len(row[None])} field(s) more than the header"
    missing = [c for c in REQUIRED_COLUMNS if row.get(c) is None]
    if missing:
        return f"missing column(s) {', '.join(missing)}"
    if not name:
        return "empty filename"
    if "/" in name or "\\" in name or name in (".", ".."):
        return f"filename {name!r} is a path, not a file name in audio/"
    try:
        fold = int(row["fold"])
    except ValueError:
        return f"bad fold {row['fold']!r} (expected an integer 1-5)"
    if fold < 1:
        return f"bad fold {fold} (expected an integer 1-5)"
    try:
        int(row["target"])
    except ValueError:
        return f"bad target {row['target']!r} (expected an integer class index)"
    if not row["category"].strip():
        return "empty category"
    return None


# GitHub builds the master zip on demand: its bytes change with every commit, so no checksum
# can be pinned here; `pipeline download esc50 --sha256 HEX` pins the one a first download prints.
SPEC = DatasetSpec(
    name=DATASET, module=__name__, env_subdir="esc50", fallback_root="data/ESC-50-master",
    how_to_get=HOW_TO_GET, layout_problem=layout_problem, split_values=int,
    check_splits=check_splits, aliases=(SYNTHETIC_DATASET,),
    remote=RemoteDataset(DATASET, (RemoteFile("ESC-50-master.zip", ZIP_URL, ".", kind="zip"),)))
