"""Reading torch files (`.pt`, `.pth`, `.bin`, `.pkl`) with tensors-only semantics.

A torch file is a pickle, and unpickling can run any code the file names. Every such file the
project reads (a LAION `.pt`, an msclap `.pth`, a transformers `pytorch_model.bin`, the optimizer
and RNG states of a resume) goes through here: `torch.load(weights_only=True)`, which rebuilds
tensors, containers and plain values only, plus numpy scalars, arrays and dtypes (released
LAION checkpoints store numpy scalars; Accelerate's RNG states numpy arrays), which carry
numbers, not code. A file that needs anything else is refused (`PickledObjects`) with the one
command that converts a file the user trusts (`python -m teminal.models.convert IN OUT`).

TEMINAL_TRUST_PICKLE=1 is the one opt-in: model files are then read with full pickle (a warning
names each file). Resume state never is: a checkpoint written by the project holds only
tensors and plain values.
"""
from __future__ import annotations

import codecs
import logging
import os
import pickle
from pathlib import Path

import numpy as np
import torch

from teminal.models.errors import ModelSpecError

log = logging.getLogger(__name__)

TRUST_ENV = "TEMINAL_TRUST_PICKLE"
CONVERT = "python -m teminal.models.convert"


class PickledObjects(ModelSpecError):
    """A torch file that holds pickled Python objects besides tensors and plain values."""


def trusted() -> bool:
    """Whether the user opted in to full pickle for model files (TEMINAL_TRUST_PICKLE=1)."""
    return os.environ.get(TRUST_ENV, "").strip().lower() in ("1", "true", "yes")


def _numpy_globals() -> list:
    """numpy's constructors of scalars, arrays and dtypes, under the names pickles use (numpy 2
    still writes `numpy.core.multiarray`, its module is `numpy._core.multiarray`)."""
    import importlib

    try:
        multiarray = importlib.import_module("numpy._core.multiarray")
    except ImportError:  # numpy 1
        multiarray = importlib.import_module("numpy.core.multiarray")
    dtypes = [getattr(np.dtypes, n) for n in getattr(np.dtypes, "__all__", [])]
    return [(multiarray.scalar, "numpy.core.multiarray.scalar"), multiarray.scalar,
            (multiarray._reconstruct, "numpy.core.multiarray._reconstruct"),
            multiarray._reconstruct, np.ndarray, np.dtype, codecs.encode,
            (codecs.encode, "_codecs.encode"), *dtypes]


def suggested_output(path: Path) -> Path:
    """Where `convert` should write a tensors-only copy: a transformers folder's
    pytorch_model.bin becomes the model.safetensors it prefers, other files NAME.tensors.EXT."""
    if path.name == "pytorch_model.bin":
        return path.with_name("model.safetensors")
    return path.with_name(f"{path.stem}.tensors{path.suffix}")


def refusal(path: Path, found: list[str]) -> str:
    what = f" ({', '.join(found[:3])}{', ...' if len(found) > 3 else ''})" if found else ""
    return (f"{path} holds pickled Python objects{what}, not only tensors: loading it could run "
            f"code, so it is refused. If you trust where it came from, convert it once with "
            f"`{CONVERT} {path} {suggested_output(path)}` and use the copy (or set "
            f"{TRUST_ENV}=1 to read model files with full pickle)")


def _objects_in(path: Path) -> list[str]:
    """The globals a torch file names beyond the allowed ones (empty: none found, or the file
    is not a zip-format torch file)."""
    allowed = {g[1] if isinstance(g, tuple) else f"{g.__module__}.{g.__qualname__}"
               for g in _numpy_globals()}
    try:
        found = torch.serialization.get_unsafe_globals_in_checkpoint(str(path))
    except Exception:  # a legacy-format or damaged file: the load's own error says more
        return []
    return [g for g in found if g not in allowed]


def load_tensors(path, map_location="cpu", model_file: bool = True, mmap: bool = False):
    """torch.load of `path` with tensors-only semantics (see the module docstring).

    A file holding other objects raises PickledObjects naming it and the fix, unless it is a
    `model_file` and the user set TEMINAL_TRUST_PICKLE=1. Other errors (truncated, not a torch
    file) are torch's own, for the caller to name. `mmap` reads no tensor data (a cheap check)."""
    path = Path(path)
    try:
        with torch.serialization.safe_globals(_numpy_globals()):
            return _load(path, map_location, mmap)
    except pickle.UnpicklingError as e:
        found = _objects_in(path)
        if not found and "Unsupported global" not in str(e):
            raise  # a damaged pickle stream, not a refused object
        if model_file and trusted():
            log.warning("%s holds pickled objects %s; reading it with full pickle because %s=1",
                        path, found, TRUST_ENV)
            return torch.load(str(path), map_location=map_location, weights_only=False)
        raise PickledObjects(refusal(path, found)) from None


def _load(path: Path, map_location, mmap: bool):
    if mmap:
        try:
            return torch.load(str(path), map_location=map_location, weights_only=True, mmap=True)
        except RuntimeError as e:  # legacy (non-zip) format: mmap is not possible
            if "mmap" not in str(e):
                raise
    return torch.load(str(path), map_location=map_location, weights_only=True)


def check_tensors_only(path, model_file: bool = False) -> None:
    """Raise PickledObjects when `path` could not be read with tensors-only semantics (reads no
    tensor data: for files that another library loads afterwards)."""
    load_tensors(path, model_file=model_file, mmap=True)


def needs_full_pickle(path) -> bool:
    """For a model file another library loads (transformers' pytorch_model.bin): False when it
    holds tensors only, True when it holds other objects and the user set TEMINAL_TRUST_PICKLE=1
    (then read it with `load_tensors`); PickledObjects otherwise."""
    try:
        check_tensors_only(path)
        return False
    except PickledObjects:
        if not trusted():
            raise
    return True


def state_dict_in(path: Path, key: str | None, what: str, howto: str = ""
                  ) -> dict[str, torch.Tensor]:
    """The state dict a downloaded weights file holds under `key` (None: the file itself, or
    its "state_dict" entry), read with tensors only. A file that does not read (truncated, not
    a torch file), with `howto` (how to get it again), or that holds no state dict of tensors
    (named as `what`) is one ModelSpecError naming it."""
    try:
        ckpt = load_tensors(path)
    except PickledObjects:
        raise
    except Exception as e:  # truncated download, not a torch file, ...
        raise ModelSpecError(f"cannot read checkpoint {path}: {str(e)[:300]}. Is the download "
                             f"complete?" + (f" ({howto})" if howto else "")) from None
    if not isinstance(ckpt, dict):
        state = None
    elif key is None:
        state = ckpt.get("state_dict", ckpt)
    else:
        state = ckpt.get(key)
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor)
                                              for v in state.values()):
        where = f"under '{key}'" if key else "(or under 'state_dict')"
        raise ModelSpecError(f"{path} is not a {what} (no state dict of tensors {where})")
    return state
