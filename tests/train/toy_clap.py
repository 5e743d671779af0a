"""A tiny model with the adapter's interface (teminal.models.ClapModel), for fast trainer tests.

Audio: log band energies of 4 time segments (so order is visible) -> linear. Text: hashed words
with their positions through a small MLP (so order is visible) -> mean -> linear. It trains in
milliseconds per step, which lets the trainer's mechanics (resume, ranks, NaN stop) be tested
without the real CLAP; the real model has its own end-to-end tests.
"""
from __future__ import annotations

import fnmatch
import json
import zlib
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

VOCAB, MAX_WORDS, DIM, SEGMENTS, BANDS = 512, 12, 32, 4, 16


class ToyClap(nn.Module):
    sample_rate = 16000

    def __init__(self, clip_samples: int = 32000):
        super().__init__()
        self.clip_samples = clip_samples
        self.audio_proj = nn.Sequential(nn.Linear(SEGMENTS * BANDS, 64), nn.ReLU(),
                                        nn.Linear(64, DIM))
        self.words = nn.Embedding(VOCAB, 24)
        self.positions = nn.Embedding(MAX_WORDS, 8)
        self.token_mlp = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Dropout(0.1))
        self.text_proj = nn.Linear(64, DIM)
        self.logit_scale_a = nn.Parameter(torch.tensor(2.0))
        self.config = {"toy": True, "clip_samples": clip_samples}

    # the adapter's interface
    def tokenize(self, texts: list[str]) -> dict:
        ids = torch.zeros(len(texts), MAX_WORDS, dtype=torch.long)
        mask = torch.zeros(len(texts), MAX_WORDS)
        for i, t in enumerate(texts):
            words = t.lower().replace(".", "").split()[:MAX_WORDS]
            for j, w in enumerate(words):
                ids[i, j] = 1 + zlib.crc32(w.encode()) % (VOCAB - 1)
                mask[i, j] = 1.0
        return {"input_ids": ids, "attention_mask": mask}

    def audio_features(self, wave: torch.Tensor) -> torch.Tensor:
        segs = wave.reshape(wave.shape[0], SEGMENTS, -1)
        spec = torch.fft.rfft(segs, dim=-1).abs() ** 2
        bands = spec[..., : spec.shape[-1] // BANDS * BANDS].reshape(*spec.shape[:2], BANDS, -1)
        return torch.log1p(bands.mean(-1)).flatten(1)

    def encode_audio(self, wave):
        return F.normalize(self.audio_proj(self.audio_features(wave)), dim=-1)

    def encode_text(self, tokens):
        ids, mask = tokens["input_ids"], tokens["attention_mask"]
        pos = torch.arange(ids.shape[1], device=ids.device).expand_as(ids)
        h = self.token_mlp(torch.cat([self.words(ids), self.positions(pos)], -1))
        h = (h * mask[..., None]).sum(1) / mask.sum(1, keepdim=True).clamp(min=1)
        return F.normalize(self.text_proj(h), dim=-1)

    def forward(self, audio=None, text_tokens=None, sample_rate=None):
        return (None if audio is None else self.encode_audio(audio),
                None if text_tokens is None else self.encode_text(text_tokens))

    def embed_audio(self, wave, sample_rate):
        return self.encode_audio(wave)

    def embed_text(self, texts):
        return self.encode_text(self.tokenize(texts))

    def logit_scale(self):
        return self.logit_scale_a.exp()

    def set_trainable(self, patterns=None):
        for name, p in self.named_parameters():
            p.requires_grad = patterns is None or any(fnmatch.fnmatch(name, pat)
                                                      for pat in patterns)
        n_total = sum(p.numel() for p in self.parameters())
        return sum(p.numel() for p in self.parameters() if p.requires_grad), n_total

    def save(self, directory, extra=None):
        from safetensors.torch import save_file

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous() for k, v in self.state_dict().items()},
                  str(directory / "model.safetensors"))
        (directory / "config.json").write_text(json.dumps({**self.config, "extra": extra or {}},
                                                          indent=1, default=str))


def toy_factory(spec: str, device="cpu") -> ToyClap:
    model = ToyClap()
    path = Path(spec)
    if (path / "model.safetensors").exists():
        from safetensors.torch import load_file

        model.load_state_dict(load_file(str(path / "model.safetensors")))
    return model.to(device)


def reference_info_nce(audio, text, scale):
    logits = scale * audio @ text.T
    target = torch.arange(len(audio), device=audio.device)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))


def weights(path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(Path(path) / "model.safetensors"))
