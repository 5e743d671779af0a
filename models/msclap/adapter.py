"""`MsClapModel`: Microsoft CLAP (Elizalde et al.; the TeminAL paper's base) behind the adapter
interface (family "msclap"), on msclap's own model modules (teminal.models.msclap.library).

Inputs follow CLAPWrapper: 44.1 kHz; clips shorter than the duration (2022: 5 s, 2023: 7 s) are
repeated and cut (no zeros); longer ones are centre-cropped here (msclap: a random window).
2023's HTSAT computes its mel filters for 32 kHz (msclap/models/config.py) while the wrapper
feeds it 44.1 kHz audio; this is msclap's own behaviour and is kept. Texts: 2023 appends
" <|endoftext|>" and pads with "!" (GPT-2 id 0) to 77 tokens; 2022 pads to 100. Embeddings are
msclap's projections, L2-normalised here (msclap normalises only in compute_similarity).

Audio tokens of the order-aware head: "frames" are CNN14's or HTSAT's frame-level features
(`library.audio_frames`), "segments" K equal parts of the clip through the same tower.
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
from teminal.models.msclap.checkpoint import HTSAT_PREFIX, fix_keys, text_width
from teminal.models.msclap.library import VERSIONS, audio_frames, build_clap
from teminal.models.msclap.tokenizer import MsClapTokenizer

TOKENIZER_SUBDIR = "tokenizer"


def default_trainable(version: str, text_config: dict) -> list[str]:
    """TeminAL's subset on Microsoft CLAP: the last audio block and the audio projection; the
    last text layer (GPT-2: and its final norm) and the text projection; the temperature.
    (BERT's pooler is left out: msclap reads the CLS token, the pooler gets no gradient.)"""
    if version == "2022":
        audio = ["audio_encoder.base.conv_block6.*", "audio_encoder.base.fc1.*"]
        last = text_config["num_hidden_layers"] - 1
        text = [f"caption_encoder.base.encoder.layer.{last}.*"]
    else:
        audio = [f"{HTSAT_PREFIX}layers.3.*", f"{HTSAT_PREFIX}norm.*"]
        last = text_config["n_layer"] - 1
        text = [f"caption_encoder.base.h.{last}.*", "caption_encoder.base.ln_f.*"]
    return audio + ["audio_encoder.projection.*"] + text + ["caption_encoder.projection.*",
                                                              "logit_scale"]


class MsClapModel(AudioTextAdapter):
    """msclap's CLAP module with msclap's input handling and a named trainable subset."""

    family = "msclap"

    def __init__(self, config: dict, tokenizer: MsClapTokenizer):
        super().__init__(config)
        self.config["family"] = "msclap"
        version = self.config["version"]
        self.settings = VERSIONS[version]
        text_cfg = self.config["text"]["config"]
        self.config.setdefault("trainable", default_trainable(version, text_cfg))
        self.config.setdefault("audio", {}).setdefault("crop", "center")
        self.clap = build_clap({**self.settings, "transformer_embed_dim": text_width(text_cfg)},
                               text_cfg, self.config.get("audio_sizes"))
        use_fft_stft(self.clap)   # msclap's CNN14 and HTSAT use torchlibrosa's STFT too
        self.tokenizer = tokenizer
        self._resampler = Resampler(self.sample_rate)
        self._init_head()

    # ---- shape -----------------------------------------------------------------------------
    @property
    def backbone(self) -> nn.Module:
        return self.clap

    @property
    def sample_rate(self) -> int:
        return int(self.settings["sample_rate"])

    @property
    def clip_samples(self) -> int:
        return int(self.settings["duration"] * self.sample_rate)

    @property
    def embed_dim(self) -> int:
        return int(self.settings["d_proj"])

    @property
    def audio_feature_dim(self) -> int:
        return int(self.clap.audio_encoder.projection.linear1.in_features)

    def _log_logit_scale(self) -> torch.Tensor:
        return self.clap.logit_scale

    def prepare_audio(self, wave, sample_rate=None, lengths=None) -> torch.Tensor:
        return prepare_batch(wave, sample_rate, lengths, resampler=self._resampler,
                             clip_samples=self.clip_samples,
                             crop_where=self.config["audio"]["crop"], device=self.device,
                             pad="repeat")

    # ---- towers ----------------------------------------------------------------------------
    def _audio_pooled(self, wave: torch.Tensor, frames: bool):
        """msclap's AudioEncoder before its projection: the tower's pooled "embedding", and its
        frame-level features when asked (read by a hook, see library.audio_frames)."""
        base = self.clap.audio_encoder.base
        if not frames:
            return base(wave)["embedding"], None
        with audio_frames(base, self.settings["audioenc_name"]) as box:
            pooled = base(wave)["embedding"]
        return pooled, box["frames"]

    def _project_audio(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.clap.audio_encoder.projection(pooled)

    def _encode_text(self, tokens: dict) -> torch.Tensor:
        tokens = {k: v.to(self.device) for k, v in tokens.items()}
        return F.normalize(self.clap.caption_encoder(tokens), dim=-1)

    # ---- persistence -----------------------------------------------------------------------
    def _write_files(self, directory: Path, config: dict) -> None:
        """DIR/model.safetensors (msclap's parameter names, plus `audio_head.*`: the rest is an
        msclap state dict, see teminal.models.msclap.export) and the tokenizer files in
        DIR/tokenizer/."""
        copy_files(self.tokenizer.files(), directory / TOKENIZER_SUBDIR)
        config["text"]["dir"] = TOKENIZER_SUBDIR
        config.pop("weights", None)
        write_safetensors(directory / WEIGHTS_FILE, self.state_dict_for_save())

    def _load_backbone_weights(self, state: dict[str, torch.Tensor], source: str) -> None:
        load_strictly(self.clap, fix_keys(state, self.clap.state_dict()), source,
                      f"Microsoft CLAP {self.config['version']}",
                      "Is ?version= right (2022: CNN14 + BERT, 2023: HTSAT + GPT-2)?")
