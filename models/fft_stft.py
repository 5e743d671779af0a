"""torchlibrosa's STFT computed with an FFT instead of two dense convolutions.

laion-clap's audio branches (PANN and HTSAT) take their spectrogram from torchlibrosa's `STFT`,
which multiplies every frame by the full DFT matrix as two Conv1d layers (window x cos, window x
sin): n_fft x (n_fft / 2 + 1) multiply-adds per frame and part. With the small model's
2,048-point window that was about 45 % of the audio branch's forward time (measured,
BENCHMARKS.md "Two costs removed"), paid again by the order-aware head's segment pass. An FFT of the windowed frames gives the same numbers (to float
rounding) at a tiny fraction of the cost.

The module keeps its conv weights, so state dicts (laion's checkpoints hold
`spectrogram_extractor.stft.conv_real.weight` and `conv_imag.weight`) load and save unchanged;
the window is read back from them (row 0 of the real part is the window itself, since the DFT's
first basis vector is all ones), so whatever a checkpoint holds is what is applied. The front end
never trains (models.trainable), so the weights are only ever read.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def _fft_forward(self, input: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """torchlibrosa STFT.forward: (batch, samples) -> real, imag, each (batch, 1, frames, bins)."""
    x = input[:, None, :]
    if self.center:
        x = F.pad(x, pad=(self.n_fft // 2, self.n_fft // 2), mode=self.pad_mode)
    frames = x[:, 0].unfold(-1, self.n_fft, self.hop_length)          # (batch, frames, n_fft)
    window = self.conv_real.weight[0, 0].to(frames.dtype)
    spectrum = torch.fft.rfft(frames * window, n=self.n_fft, dim=-1)  # (batch, frames, bins)
    return spectrum.real[:, None], spectrum.imag[:, None]


def use_fft_stft(module: torch.nn.Module) -> int:
    """Make every torchlibrosa STFT inside `module` compute with an FFT; returns how many."""
    try:
        from torchlibrosa.stft import STFT
    except ImportError:  # pragma: no cover - laion-clap always brings torchlibrosa
        return 0
    count = 0
    for m in module.modules():
        if isinstance(m, STFT) and not getattr(m, "_teminal_fft", False):
            m.forward = _fft_forward.__get__(m)
            m._teminal_fft = True
            count += 1
    return count
