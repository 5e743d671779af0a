"""Waveforms into the audio tower's input: resampled once per batch, fitted to the clip length.

LAION-CLAP repeat-pads short clips and randomly crops long ones, so long clips embed differently
on every call (laion-clap issues 166, 90). Here the fit is deterministic: short clips are
repeated whole and zero-padded to the clip length (LAION's "repeatpad"), long ones are cut to
the centre window (or the first window), never at random.
"""
from __future__ import annotations

import logging

import torch
import torch.nn.functional as F

log = logging.getLogger(__name__)

CROPS = ("center", "start")


def repeat_pad(wave: torch.Tensor, length: int) -> torch.Tensor:
    """[B, T] with T < length -> [B, length]: whole repeats of the clip, then zeros."""
    t = wave.shape[-1]
    if t == 0:
        raise ValueError("cannot embed an empty waveform (0 samples)")
    repeats = length // t
    out = wave.repeat(1, repeats) if repeats > 1 else wave
    return F.pad(out, (0, length - out.shape[-1]))


def repeat_cut(wave: torch.Tensor, length: int) -> torch.Tensor:
    """[B, T] with T < length -> [B, length]: the clip repeated and cut at `length`, no zeros
    (msclap's padding)."""
    t = wave.shape[-1]
    if t == 0:
        raise ValueError("cannot embed an empty waveform (0 samples)")
    return wave.repeat(1, -(-length // t))[:, :length]


PADS = {"repeatpad": repeat_pad, "repeat": repeat_cut}


def crop(wave: torch.Tensor, length: int, where: str = "center") -> torch.Tensor:
    """[B, T] with T > length -> [B, length]: the centre window or the first one."""
    if where not in CROPS:
        raise ValueError(f"crop must be one of {CROPS}, not {where!r}")
    start = (wave.shape[-1] - length) // 2 if where == "center" else 0
    return wave[:, start:start + length]


def fit_length(wave: torch.Tensor, length: int, where: str = "center",
               lengths: torch.Tensor | None = None, pad: str = "repeatpad") -> torch.Tensor:
    """Fit a batch [B, T] to [B, length]. With `lengths` (valid samples per row, for batches of
    zero-padded clips of different durations) each row is fitted from its own samples. `pad`:
    "repeatpad" (whole repeats, then zeros: LAION, transformers) or "repeat" (repeats cut at
    the length: msclap)."""
    if pad not in PADS:
        raise ValueError(f"pad must be one of {sorted(PADS)}, not {pad!r}")
    if lengths is None:
        if wave.shape[-1] == length:
            return wave
        if wave.shape[-1] < length:
            return PADS[pad](wave, length)
        return crop(wave, length, where)
    lengths = [int(n) for n in torch.as_tensor(lengths).tolist()]
    if len(lengths) != wave.shape[0]:
        raise ValueError(f"lengths has {len(lengths)} entries for a batch of {wave.shape[0]}")
    rows = [fit_length(wave[i:i + 1, :min(n, wave.shape[-1])], length, where, pad=pad)
            for i, n in enumerate(lengths)]
    return torch.cat(rows, dim=0)


class Resampler:
    """Resamples batches to one target rate, with one filter kernel per source rate (built once,
    cached per device) and one log line per source rate."""

    def __init__(self, target_rate: int):
        self.target_rate = int(target_rate)
        self._kernels: dict[tuple[int, str], torch.nn.Module] = {}

    def __call__(self, wave: torch.Tensor, rate: int) -> torch.Tensor:
        rate = int(rate)
        if rate == self.target_rate:
            return wave
        key = (rate, str(wave.device))
        if key not in self._kernels:
            import torchaudio

            if not any(r == rate for r, _ in self._kernels):
                log.info("resampling audio from %d Hz to the model's %d Hz", rate,
                         self.target_rate)
            self._kernels[key] = torchaudio.transforms.Resample(
                rate, self.target_rate).to(wave.device)
        return self._kernels[key](wave)

    def new_length(self, n: int, rate: int) -> int:
        """Samples after resampling n samples from `rate` (torchaudio's rounding: ceil)."""
        return -(-int(n) * self.target_rate // int(rate))


def prepare_batch(wave: torch.Tensor, sample_rate: int | None, lengths, *, resampler: Resampler,
                  clip_samples: int, crop_where: str, device,
                  pad: str = "repeatpad") -> torch.Tensor:
    """What every family's `prepare_audio` does: [B, T] at `sample_rate` (None: the model's) ->
    float32 [B, clip_samples] at the model's rate on `device`; resampled once for the batch,
    then repeat-padded or cropped (deterministic)."""
    if wave.dim() != 2:
        raise ValueError(f"audio must be a [batch, samples] tensor, got shape "
                         f"{tuple(wave.shape)} (add a batch dimension for one clip)")
    target = resampler.target_rate
    rate = target if sample_rate is None else int(sample_rate)
    wave = wave.to(device, torch.float32)
    if rate != target:
        wave = resampler(wave, rate)
        if lengths is not None:
            lengths = torch.as_tensor([resampler.new_length(n, rate)
                                       for n in torch.as_tensor(lengths).tolist()])
    return fit_length(wave, clip_samples, crop_where, lengths, pad=pad)
