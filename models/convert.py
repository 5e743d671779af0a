"""Convert a torch file you trust into one that loads with tensors only.

    python -m teminal.models.convert IN OUT

IN is read with FULL pickle: any code it names runs. Use this only on a file whose origin you
trust (a checkpoint you downloaded from its publisher, or wrote yourself with older code). OUT
keeps tensors and plain values (numbers, strings, lists, dicts); numpy arrays become tensors
and numpy scalars numbers; any other object is dropped and named. OUT ending in `.safetensors`
gets the state dict alone (the `state_dict` or `model` entry, or the file's top-level tensors):
a transformers folder reads `model.safetensors` before `pytorch_model.bin`. OUT is checked to
load with tensors only (teminal.models.tensor_files) before the command reports success; OUT
may be IN (it is replaced only then).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from teminal.models.tensor_files import load_tensors

PLAIN = (bool, int, float, str, bytes, type(None))


def tensors_only(obj, where: str, dropped: list[str]):
    """`obj` with every value that is not a tensor, a plain value or a container of them
    removed (named in `dropped`)."""
    if isinstance(obj, torch.Tensor) or isinstance(obj, PLAIN):
        return obj
    if isinstance(obj, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(obj))
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, dict):
        kept = {}
        for k, v in obj.items():
            value = tensors_only(v, f"{where}[{k!r}]", dropped)
            if value is not _DROPPED and isinstance(k, PLAIN):
                kept[k] = value
        return kept
    if isinstance(obj, (list, tuple)):
        items = [tensors_only(v, f"{where}[{i}]", dropped) for i, v in enumerate(obj)]
        return type(obj)(v for v in items if v is not _DROPPED)
    dropped.append(f"{where} ({type(obj).__module__}.{type(obj).__qualname__})")
    return _DROPPED


_DROPPED = object()


def state_dict_of(obj, source: Path) -> dict[str, torch.Tensor]:
    """The flat name -> tensor mapping a .safetensors file can hold."""
    if isinstance(obj, dict):
        for key in ("state_dict", "model"):
            inner = obj.get(key)
            if isinstance(inner, dict) and inner and all(isinstance(v, torch.Tensor)
                                                         for v in inner.values()):
                return inner
        tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
        if tensors:
            return tensors
    raise ValueError(f"{source} holds no state dict of tensors to write as .safetensors; "
                     f"write a .pt file instead")


def convert(source: Path, target: Path) -> list[str]:
    """Write the tensors-only copy of `source` to `target`; the dropped entries."""
    obj = torch.load(str(source), map_location="cpu", weights_only=False)  # trusted by the user
    dropped: list[str] = []
    clean = tensors_only(obj, "file", dropped)
    tmp = target.with_name(target.name + ".tmp")
    safetensors = target.suffix == ".safetensors"
    if safetensors:
        from safetensors.torch import save_file

        state = state_dict_of(clean, source)
        save_file({k: v.detach().contiguous().clone() for k, v in state.items()}, str(tmp))
    else:
        torch.save(clean, str(tmp))
    try:
        _verify(tmp, safetensors)
    except Exception:
        tmp.unlink(missing_ok=True)
        raise
    tmp.replace(target)
    return dropped


def _verify(path: Path, safetensors: bool) -> None:
    if safetensors:
        from safetensors.torch import load_file

        load_file(str(path))
    else:
        load_tensors(path, model_file=False)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m teminal.models.convert",
                                description=__doc__.split("\n\n")[0],
                                epilog="IN is unpickled with full pickle: only run this on a file "
                                       "you trust.")
    p.add_argument("source", metavar="IN", type=Path, help="the torch file (.pt, .pth, .bin, .pkl)")
    p.add_argument("target", metavar="OUT", type=Path,
                   help="the tensors-only copy (.safetensors: the state dict alone)")
    args = p.parse_args(argv)
    if not args.source.is_file():
        print(f"error: {args.source} is not a file", file=sys.stderr)
        return 2
    try:
        dropped = convert(args.source, args.target)
    except Exception as e:  # noqa: BLE001 - whatever unpickling IN raised: one line
        print(f"error: converting {args.source} failed: {' '.join(str(e).split())[:400]}",
              file=sys.stderr)
        return 2
    for entry in dropped:
        print(f"dropped {entry}")
    print(f"wrote {args.target}: it loads with tensors only")
    return 0


if __name__ == "__main__":
    sys.exit(main())
