"""ToyClap: a tiny trainable model on the real adapter base, for fast trainer tests.

Audio: log band energies of 4 time segments (so order is visible) -> MLP. Text: hashed words
with their positions through a small MLP (so order is visible) -> mean -> linear. It trains in
milliseconds per step, which lets the trainer's mechanics (resume, ranks, NaN stop) be tested
without the real CLAP; the real families have their own end-to-end tests. Being an
`AudioTextAdapter`, it runs the shared forward, logit scale, save and trainable names.
"""
from __future__ import annotations

import fnmatch
import zlib
from pathlib import Path

import torch
from torch import nn

from teminal.models.adapter import WEIGHTS_FILE, AudioTextAdapter, write_safetensors

TOY_VOCAB, TOY_MAX_WORDS, TOY_DIM, TOY_SEGMENTS, TOY_BANDS = 512, 12, 32, 4, 16


def toy_tokenize(texts: list[str]) -> dict:
    """Hashed lower-case words -> {input_ids, attention_mask} of TOY_MAX_WORDS."""
    ids = torch.zeros(len(texts), TOY_MAX_WORDS, dtype=torch.long)
    mask = torch.zeros(len(texts), TOY_MAX_WORDS)
    for i, t in enumerate(texts):
        words = t.lower().replace(".", "").split()[:TOY_MAX_WORDS]
        for j, w in enumerate(words):
            ids[i, j] = 1 + zlib.crc32(w.encode()) % (TOY_VOCAB - 1)
            mask[i, j] = 1.0
    return {"input_ids": ids, "attention_mask": mask}


class ToyClap(AudioTextAdapter):
    family = "toy"
    supports_audio_head = False
    sample_rate = 16000

    def __init__(self, clip_samples: int = 32000):
        super().__init__({"toy": True, "clip_samples": clip_samples})
        self.clip_samples = clip_samples
        self.audio_proj = nn.Sequential(nn.Linear(TOY_SEGMENTS * TOY_BANDS, 64), nn.ReLU(),
                                        nn.Linear(64, TOY_DIM))
        self.words = nn.Embedding(TOY_VOCAB, 24)
        self.positions = nn.Embedding(TOY_MAX_WORDS, 8)
        self.token_mlp = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Dropout(0.1))
        self.text_proj = nn.Linear(64, TOY_DIM)
        self.logit_scale_a = nn.Parameter(torch.tensor(2.0))
        self.tokenizer = toy_tokenize

    @property
    def backbone(self) -> nn.Module:
        return self

    @property
    def embed_dim(self) -> int:
        return TOY_DIM

    @property
    def audio_feature_dim(self) -> int:
        return TOY_SEGMENTS * TOY_BANDS

    def _log_logit_scale(self) -> torch.Tensor:
        return self.logit_scale_a

    def prepare_audio(self, wave, sample_rate=None, lengths=None) -> torch.Tensor:
        """The toy reads any length divisible by its 4 segments, at any rate: no fitting."""
        return torch.as_tensor(wave).to(self.device, torch.float32)

    def audio_features(self, wave: torch.Tensor) -> torch.Tensor:
        segs = wave.reshape(wave.shape[0], TOY_SEGMENTS, -1)
        spec = torch.fft.rfft(segs, dim=-1).abs() ** 2
        bands = spec[..., : spec.shape[-1] // TOY_BANDS * TOY_BANDS].reshape(*spec.shape[:2], TOY_BANDS, -1)
        return torch.log1p(bands.mean(-1)).flatten(1)

    def _audio_pooled(self, wave: torch.Tensor, frames: bool):
        return self.audio_features(wave), None

    def _project_audio(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.audio_proj(pooled)

    def _encode_text(self, tokens) -> torch.Tensor:
        ids, mask = tokens["input_ids"].to(self.device), tokens["attention_mask"].to(self.device)
        pos = torch.arange(ids.shape[1], device=ids.device).expand_as(ids)
        h = self.token_mlp(torch.cat([self.words(ids), self.positions(pos)], -1))
        h = (h * mask[..., None]).sum(1) / mask.sum(1, keepdim=True).clamp(min=1)
        return nn.functional.normalize(self.text_proj(h), dim=-1)

    def set_trainable(self, patterns=None):
        """Lenient, unlike a real family: patterns that match nothing train nothing (the
        trainer's own check then names the problem)."""
        from teminal.models.trainable import resolve

        patterns = resolve(patterns, ["*"])
        for name, p in self.named_parameters():
            p.requires_grad = any(fnmatch.fnmatch(name, pat) for pat in patterns)
        n_total = sum(p.numel() for p in self.parameters())
        return sum(p.numel() for p in self.parameters() if p.requires_grad), n_total

    def _write_files(self, directory: Path, config: dict) -> None:
        write_safetensors(directory / WEIGHTS_FILE, self.state_dict_for_save())


def toy_factory(spec: str, device="cpu") -> ToyClap:
    model = ToyClap()
    path = Path(spec)
    if (path / WEIGHTS_FILE).exists():
        from safetensors.torch import load_file

        model.load_state_dict(load_file(str(path / WEIGHTS_FILE)))
    return model.to(device)
