"""`ClapModel`: laion-clap's `CLAP` behind the adapter interface (families "small" and "laion").

The weights live in `self.clap` under laion-clap's own parameter names, so a saved
`model.safetensors` loads into a plain laion `CLAP` as well (its `audio_head.*` aside).
Audio tokens of the order-aware head: "segments" (the small model) or K time bins of the
branch's `fine_grained_embedding` ("frames"; LAION's HTSAT).
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from teminal.models.adapter import (WEIGHTS_FILE, AudioTextAdapter, copy_files,
                                    load_strictly, write_safetensors)
from teminal.models.audio_input import Resampler, prepare_batch
from teminal.models.fft_stft import use_fft_stft
from teminal.models.laion.library import build_clap

TOKENIZER_SUBDIR = "tokenizer"


class ClapModel(AudioTextAdapter):
    """A laion-clap CLAP with a tokenizer, deterministic audio input and a named trainable
    subset. Build it with `teminal.models.load_model`; `config` is the resolved spec (JSON)."""

    def __init__(self, config: dict, tokenizer, text_module: nn.Module | None = None):
        super().__init__(config)
        clap_cfg = self.config["clap"]
        text = self.config.get("text", {})
        pooling = text.get("pooling", "mean")
        self.clap = build_clap(clap_cfg, text.get("roberta_config"), text_module,
                               pooled_width=pooled_width(text_module, pooling))
        # a Hugging Face encoder tower is pooled as its model card says (laion's BERT path
        # takes the pooler output, which sentence encoders such as MiniLM never trained)
        self._text_pooling = pooling if text.get("encoder") == "hf" else None
        use_fft_stft(self.clap)   # same spectrogram, half the small branch's time (fft_stft.py)
        self.tokenizer = tokenizer
        audio_cfg = clap_cfg["audio_cfg"]
        self._audio_wants_dict = (audio_cfg["model_type"] == "HTSAT"
                                  or audio_cfg.get("model_name") == "Cnn14")
        self._crop = self.config.get("audio", {}).get("crop", "center")
        self._resampler = Resampler(self.sample_rate)
        self._set_spec_augment(self.config.get("audio", {}).get("spec_augment", "laion"))
        self._init_head()

    # ---- shape of the model -------------------------------------------------------------
    @property
    def backbone(self) -> nn.Module:
        return self.clap

    @property
    def family(self) -> str:
        """"small" or "laion" (see teminal.models.registry)."""
        from teminal.models.registry import legacy_family

        return self.config.get("family") or legacy_family(self.config)

    @property
    def sample_rate(self) -> int:
        return int(self.config["clap"]["audio_cfg"]["sample_rate"])

    @property
    def clip_samples(self) -> int:
        return int(self.config["clap"]["audio_cfg"]["clip_samples"])

    @property
    def embed_dim(self) -> int:
        """Size of the joint audio-text embedding (laion's `joint_embed_shape`)."""
        return int(self.clap.joint_embed_shape)

    @property
    def audio_feature_dim(self) -> int:
        return int(self.config["clap"]["embed_dim"])

    def _log_logit_scale(self) -> torch.Tensor:
        return self.clap.logit_scale_a

    # ---- inputs ---------------------------------------------------------------------------
    def prepare_audio(self, wave: torch.Tensor, sample_rate: int | None = None,
                      lengths: torch.Tensor | None = None) -> torch.Tensor:
        """[B, T] at `sample_rate` -> float32 [B, clip_samples] at the model's rate, on the
        model's device: resampled once for the batch, then repeat-padded or centre-cropped."""
        return prepare_batch(wave, sample_rate, lengths, resampler=self._resampler,
                             clip_samples=self.clip_samples, crop_where=self._crop,
                             device=self.device)

    # ---- towers ---------------------------------------------------------------------------
    def _branch(self, wave: torch.Tensor) -> dict:
        x = {"waveform": wave} if self._audio_wants_dict else wave
        return self.clap.audio_branch(x, mixup_lambda=None, device=wave.device)

    def _audio_pooled(self, wave: torch.Tensor, frames: bool):
        out = self._branch(wave)
        return out["embedding"], (out["fine_grained_embedding"] if frames else None)

    def _project_audio(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.clap.audio_projection(pooled)

    def _encode_text(self, tokens) -> torch.Tensor:
        if isinstance(tokens, dict):
            tokens = {k: v.to(self.device) for k, v in tokens.items()}
        else:
            tokens = tokens.to(self.device)
        if self._text_pooling is None:
            return F.normalize(self.clap.encode_text(tokens, device=self.device), dim=-1)
        out = self.clap.text_branch(**tokens)
        pooled = pool_text(out, tokens["attention_mask"], self._text_pooling)
        return F.normalize(self.clap.text_projection(pooled), dim=-1)

    def _set_spec_augment(self, setting) -> None:
        """'laion': keep laion's SpecAugment (training mode only); false/None: none; a dict:
        SpecAugmentation(time_drop_width, time_stripes_num, freq_drop_width, freq_stripes_num).
        laion's stock one drops up to 64 frames, which crashes torchlibrosa (randint on an
        empty range) when a clip has <= 64 frames, as with the small model's 160 ms hop."""
        branch = self.clap.audio_branch
        if setting == "laion":
            return
        if not setting:
            branch.spec_augmenter = nn.Identity()
            return
        from torchlibrosa.augmentation import SpecAugmentation

        branch.spec_augmenter = SpecAugmentation(**setting)

    # ---- persistence ---------------------------------------------------------------------
    def _write_files(self, directory: Path, config: dict) -> None:
        """`model.safetensors` (laion parameter names, plus `audio_head.*`) and the tokenizer's
        files (RoBERTa's two, or a Hugging Face encoder's) in `tokenizer/`, so the folder is
        self-contained; the bundled BPE has none."""
        files = self.tokenizer.files()
        if files:
            copy_files(files, directory / TOKENIZER_SUBDIR)
            config["text"]["dir"] = TOKENIZER_SUBDIR
        write_safetensors(directory / WEIGHTS_FILE, self.state_dict_for_save())

    def _load_backbone_weights(self, state: dict[str, torch.Tensor], source: str) -> None:
        """laion-named weights, strictly, after the known key fixes
        (teminal.models.laion.checkpoint.fix_keys)."""
        from teminal.models.laion.checkpoint import fix_keys

        load_strictly(self.clap, fix_keys(state, self.clap), source,
                      f"model {self.config.get('name')!r}",
                      "Is it the architecture the spec says (HTSAT-tiny + RoBERTa, non-fusion)?")


def pooled_width(text_module: nn.Module | None, pooling: str) -> int | None:
    """Width of a Hugging Face text tower's pooled vector (the projection's input)."""
    if text_module is None:
        return None
    width = int(text_module.config.hidden_size)
    return 2 * width if pooling == "mean+moment" else width


def pool_text(out, attention_mask: torch.Tensor, pooling: str) -> torch.Tensor:
    """A transformers encoder's output pooled over the real tokens of each text (padding masked
    out): "mean" (sentence-transformers' pooling), "mean+moment" (the mean beside the
    centred-position moment sum_i tau_i h_i / n, tau_i = (i - (n - 1) / 2) / n over the n real
    tokens: odd in word order, as the audio head's moment term is in time; each part
    standardised, since the moment's norm is a tenth of the mean's and would otherwise barely
    reach the projection), "cls", "pooler"."""
    if pooling == "pooler":
        return out.pooler_output
    hidden = out.last_hidden_state
    if pooling == "cls":
        return hidden[:, 0]
    mask = attention_mask.to(hidden.dtype)
    n = mask.sum(1, keepdim=True).clamp(min=1)
    mean = (hidden * mask.unsqueeze(-1)).sum(1) / n
    if pooling == "mean":
        return mean
    position = torch.arange(hidden.shape[1], device=hidden.device, dtype=hidden.dtype)
    tau = (position.unsqueeze(0) - (n - 1) / 2) / n * mask
    moment = (hidden * tau.unsqueeze(-1)).sum(1) / n
    width = (hidden.shape[-1],)
    return torch.cat([F.layer_norm(mean, width), F.layer_norm(moment, width)], dim=1)
