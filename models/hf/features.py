"""The log-mel input of transformers' ClapAudioModel (non-fusion), computed in torch.

ClapFeatureExtractor's definition for non-fusion models ("rand_trunc" + "repeatpad"): power
spectrogram of a periodic Hann window, centre-padded by reflection, slaney mel filters from
transformers' own `mel_filter_bank`, 10 log10 with a 1e-10 floor; on the model's device, in the
batch, instead of numpy per clip. Long clips are cut by the adapter (deterministic centre
window), not at random as the extractor does.
"""
from __future__ import annotations

import torch
from torch import nn

# ClapFeatureExtractor's defaults: 48 kHz, 10 s, 64 mel bins, 1024-point FFT, hop 480, 0-14 kHz
FEATURE_DEFAULTS = {"feature_size": 64, "sampling_rate": 48000, "hop_length": 480,
                    "max_length_s": 10, "fft_window_size": 1024, "frequency_min": 0,
                    "frequency_max": 14000}


def feature_settings(settings: dict) -> dict:
    """The extractor settings this module reads, CLAP's defaults for any that are absent."""
    return {**FEATURE_DEFAULTS, **{k: settings[k] for k in FEATURE_DEFAULTS if k in settings}}


class ClapMelFeatures(nn.Module):
    """[B, T] waveform -> [B, 1, frames, mel] log-mel input of ClapAudioModel (non-fusion)."""

    def __init__(self, settings: dict):
        super().__init__()
        from transformers.audio_utils import mel_filter_bank

        s = feature_settings(settings)
        self.n_fft, self.hop = int(s["fft_window_size"]), int(s["hop_length"])
        bank = mel_filter_bank(num_frequency_bins=self.n_fft // 2 + 1,
                               num_mel_filters=int(s["feature_size"]),
                               min_frequency=float(s["frequency_min"]),
                               max_frequency=float(s["frequency_max"]),
                               sampling_rate=int(s["sampling_rate"]),
                               norm="slaney", mel_scale="slaney")
        self.register_buffer("mel_bank", torch.as_tensor(bank, dtype=torch.float32),
                             persistent=False)
        self.register_buffer("window", torch.hann_window(self.n_fft, periodic=True),
                             persistent=False)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        spec = torch.stft(wave.float(), self.n_fft, self.hop, window=self.window, center=True,
                          pad_mode="reflect", return_complex=True).abs().pow(2)  # [B, F, frames]
        mel = torch.matmul(spec.transpose(1, 2), self.mel_bank).clamp(min=1e-10)
        return (10.0 * torch.log10(mel)).unsqueeze(1)
