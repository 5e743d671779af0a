"""A run's checkpoints: what they hold, how they are written, checked and read back.

RUN_DIR/checkpoints/step-N/ holds Accelerate's `save_state` files (model.safetensors,
optimizer.bin, random_states_R.pkl per rank, scaler.pt with fp16) and the project's own state,
written as data, never as pickled objects:

- progress.json: `TrainProgress` (the step, the data the run read: build ids, the catalog's
  shard digest, the selected groups' digest);
- average.safetensors: the running sums of `--average-from` (teminal.train.averaging);
- COMPLETE, written last: a folder without it is a save that did not finish.

Before a resume reads anything, every pickle-format file of the folder must load with tensors
only (teminal.models.tensor_files): Accelerate loads them with `weights_only=True`, except its
RNG states, which it silently skips when they do not load. Folders written before this layout
(custom_checkpoint_N.pkl, Accelerate's register_for_checkpointing) are converted in place after
the same check.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from teminal.models.tensor_files import check_tensors_only, load_tensors

log = logging.getLogger("teminal.train")

PROGRESS_FILE = "progress.json"
AVERAGE_FILE = "average.safetensors"
COMPLETE_FILE = "COMPLETE"
MODEL_FILE = "model.safetensors"    # Accelerate's name for the model's weights
LEGACY_STATE = "custom_checkpoint_{}.pkl"
PICKLE_SUFFIXES = (".bin", ".pkl", ".pt", ".pth")


@dataclass
class TrainProgress:
    """The project's state in every checkpoint (progress.json)."""
    step: int = 0
    world_size: int = 1
    num_workers: int = 0
    selection: str = ""  # sha256 of the trained group keys: catches a changed query file/catalog
    build_ids: list[str] = field(default_factory=list)   # the catalog's builds
    catalog_sha256: str = ""  # digest of the catalog's shard sha256s: catches a rebuilt --data

    def state_dict(self) -> dict:
        return asdict(self)

    def load_state_dict(self, d: dict) -> None:
        known = {f.name for f in fields(self)}
        self.__dict__.update({k: v for k, v in d.items() if k in known})


def checkpoint_dir(run_dir: Path, step: int) -> Path:
    return run_dir / "checkpoints" / f"step-{step}"


def complete_checkpoints(run_dir: Path) -> list[Path]:
    """Checkpoints whose save finished on every rank, oldest first."""
    found = [p for p in (run_dir / "checkpoints").glob("step-*")
             if (p / COMPLETE_FILE).exists()]
    return sorted(found, key=lambda p: int(p.name.split("-")[1]))


def non_finite_weight(named_tensors) -> str | None:
    """The name of the first floating-point tensor holding NaN or inf, else None."""
    from teminal.models.registry import non_finite_tensor

    return non_finite_tensor(named_tensors)


def last_good_checkpoint(run_dir: Path) -> Path | None:
    """The newest complete checkpoint whose weights are all finite."""
    from safetensors.torch import load_file

    for path in reversed(complete_checkpoints(run_dir)):
        try:
            state = load_file(str(path / MODEL_FILE))
        except Exception:  # noqa: BLE001 - damaged or missing: not a good checkpoint
            continue
        if non_finite_weight(state.items()) is None:
            return path
    return None


# Writing

def write_json_atomic(path: Path, obj) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=1) + "\n")
    tmp.replace(path)


def save_run_state(folder: Path, progress: TrainProgress, average=None) -> None:
    """The project's files of a checkpoint (main process; Accelerate writes the rest)."""
    write_json_atomic(folder / PROGRESS_FILE, progress.state_dict())
    if average is not None:
        average.save(folder / AVERAGE_FILE)


def disk_error(e: OSError, target: Path, run_dir: Path) -> OSError:
    """One line for a failed write: what, where, and what is still usable."""
    last = last_good_checkpoint(run_dir)
    where = e.filename or target
    return OSError(f"cannot write {where} ({e.strerror or e}; is the disk full?); "
                   f"{target} was not saved. The last complete checkpoint is "
                   f"{last or 'none'}: free some space, then rerun with --resume")


# Reading back

def check_state_files(folder: Path) -> None:
    """Refuse (PickledObjects) a checkpoint whose pickle-format files hold anything but
    tensors and plain values; a resume never unpickles code (TEMINAL_TRUST_PICKLE does not
    apply: the project writes no such objects)."""
    for path in sorted(folder.iterdir()):
        if path.suffix in PICKLE_SUFFIXES and path.is_file():
            check_tensors_only(path, model_file=False)


def migrate_legacy_state(folder: Path) -> None:
    """custom_checkpoint_0.pkl (TrainProgress) and _1.pkl (the weight average), written
    through Accelerate's register_for_checkpointing before progress.json existed, become this
    layout's files (read with tensors only; check_state_files ran first). Main process."""
    legacy = [folder / LEGACY_STATE.format(i) for i in range(2)]
    if not legacy[0].is_file() or (folder / PROGRESS_FILE).exists():
        return
    progress = TrainProgress()
    progress.load_state_dict(load_tensors(legacy[0], model_file=False))
    write_json_atomic(folder / PROGRESS_FILE, progress.state_dict())
    if legacy[1].is_file():
        from teminal.train.averaging import save_average_state

        save_average_state(folder / AVERAGE_FILE, load_tensors(legacy[1], model_file=False))
    for path in legacy:
        path.unlink(missing_ok=True)
    log.info("converted %s to the checkpoint layout without pickled state", folder)


def read_progress(folder: Path) -> TrainProgress:
    path = folder / PROGRESS_FILE
    try:
        saved = json.loads(path.read_text())
        if not isinstance(saved, dict):
            raise ValueError("not a JSON object")
    except (OSError, ValueError) as e:
        raise ValueError(f"--resume: {path} is unreadable ({e}); the checkpoint is damaged: "
                         f"move {folder} away to resume from the one before") from None
    progress = TrainProgress()
    progress.load_state_dict(saved)
    return progress


def load_average(folder: Path, average) -> None:
    path = folder / AVERAGE_FILE
    if average is None:
        return
    if not path.is_file():
        raise ValueError(f"--resume: {folder} holds no {AVERAGE_FILE}; it was saved without "
                         f"--average-from (rerun with the run's settings)")
    average.load(path)


def truncate_metrics(path: Path, last_step: int) -> None:
    """A resumed run rewrites the steps a killed run logged after its last checkpoint; a line a
    kill tore in half is dropped with them."""
    if not path.exists():
        return
    keep, torn = [], 0
    for line in path.read_text(errors="replace").splitlines():
        try:
            row = json.loads(line) if line.strip() else None
        except ValueError:
            row, torn = None, torn + 1
        if isinstance(row, dict) and row.get("step", 0) <= last_step:
            keep.append(line)
    if torn:
        log.warning("%s: dropped %d unreadable line(s) (written when the run was killed)",
                    path, torn)
    write_lines_atomic(path, keep)


def write_lines_atomic(path: Path, lines: list[str]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(ln + "\n" for ln in lines))
    os.replace(tmp, path)


def remove_partial(path: Path) -> None:
    """A checkpoint folder whose save failed: it holds no COMPLETE, so nothing reads it."""
    if not (path / COMPLETE_FILE).exists():
        shutil.rmtree(path, ignore_errors=True)
