"""Helpers of the trainer tests; the toy model itself is teminal.testing.ToyClap."""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F


def reference_info_nce(audio, text, scale):
    logits = scale * audio @ text.T
    target = torch.arange(len(audio), device=audio.device)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))


def weights(path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(Path(path) / "model.safetensors"))
