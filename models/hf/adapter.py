"""`HfClapModel`: transformers' `ClapModel` behind the adapter interface (family "hf").

The parameters are those of `self.hf` under transformers' own names, so `--trainable` patterns
read like `text_model.encoder.layer.11.*`, and `save` writes DIR/hf/ with save_pretrained: that
folder loads with plain `transformers.ClapModel.from_pretrained`. An order-aware head is saved
beside it (DIR/audio_head.safetensors, its spec in DIR/config.json): `load_model(DIR)` reloads
it, plain transformers cannot (DIR/hf/ alone embeds as the pooled model).

Audio tokens of the head: "frames" are the audio encoder's last hidden state before pooling
(HTSAT's [B, C, freq, time] grid, the same tensor the pooled output averages) averaged over
frequency and binned into K time bins; "segments" encode K equal parts of the clip.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from teminal.models.adapter import AudioTextAdapter, write_safetensors
from teminal.models.audio_input import Resampler, prepare_batch
from teminal.models.errors import ModelSpecError
from teminal.models.hf.features import ClapMelFeatures, feature_settings

HF_SUBDIR = "hf"
HEAD_FILE = "audio_head.safetensors"
TEXT_MAX_LENGTH = 77  # LAION-CLAP's tokenizer length


def default_trainable(hf_config) -> list[str]:
    """TeminAL's subset on a transformers CLAP: the last text layer, the pooler and the text
    projection; the last audio stage, its final norm and the audio projection; the temperature."""
    last_text = hf_config.text_config.num_hidden_layers - 1
    last_audio = len(hf_config.audio_config.depths) - 1
    return [f"text_model.encoder.layer.{last_text}.*", "text_model.pooler.*",
            "text_projection.*", f"audio_model.audio_encoder.layers.{last_audio}.*",
            "audio_model.audio_encoder.norm.*", "audio_projection.*", "logit_scale_a"]


def refuse_fusion(hf_config, source) -> None:
    if getattr(hf_config.audio_config, "enable_fusion", False):
        raise ModelSpecError(
            f"{source}: a feature-fusion CLAP (enable_fusion=true, e.g. laion/clap-htsat-fused) "
            "needs 4-channel fusion input, which this adapter does not build; use a non-fusion "
            "checkpoint such as laion/clap-htsat-unfused")


class ClapTextTokenizer:
    """A transformers tokenizer -> {input_ids, attention_mask}, padded to `max_length` so a
    text's tokens do not depend on the rest of its batch."""

    def __init__(self, tokenizer, max_length: int):
        self.transformers = tokenizer   # what save_pretrained writes beside the model
        self.max_length = int(max_length)

    def __call__(self, texts: list[str]) -> dict[str, torch.Tensor]:
        enc = self.transformers(list(texts), padding="max_length", truncation=True,
                                max_length=self.max_length, return_tensors="pt")
        return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}


class HfClapModel(AudioTextAdapter):
    """A transformers ClapModel with torch audio features, a tokenizer and a trainable subset."""

    family = "hf"

    def __init__(self, hf_model, tokenizer, features: dict, config: dict):
        super().__init__(config)
        refuse_fusion(hf_model.config, config.get("source"))
        self.hf = hf_model
        self.feature_settings = feature_settings(features)
        self.features = ClapMelFeatures(self.feature_settings)
        self.config["family"] = "hf"
        self.config.setdefault("trainable", default_trainable(hf_model.config))
        self.config.setdefault("audio", {}).setdefault("crop", "center")
        self.config["features"] = dict(self.feature_settings)
        self._resampler = Resampler(self.sample_rate)
        max_pos = getattr(hf_model.config.text_config, "max_position_embeddings", 514)
        self.tokenizer = ClapTextTokenizer(tokenizer, min(TEXT_MAX_LENGTH, int(max_pos) - 2))
        self._init_head()

    # ---- shape -----------------------------------------------------------------------------
    @property
    def backbone(self) -> nn.Module:
        return self.hf

    @property
    def sample_rate(self) -> int:
        return int(self.feature_settings["sampling_rate"])

    @property
    def clip_samples(self) -> int:
        return int(self.feature_settings["max_length_s"] * self.sample_rate)

    @property
    def embed_dim(self) -> int:
        return int(self.hf.config.projection_dim)

    @property
    def audio_feature_dim(self) -> int:
        return int(self.hf.audio_projection.linear1.in_features)

    def _log_logit_scale(self) -> torch.Tensor:
        """logit_scale_a (transformers keeps a second, logit_scale_t, for text->audio logits;
        one temperature for both directions, as for the LAION family)."""
        return self.hf.logit_scale_a

    def prepare_audio(self, wave, sample_rate=None, lengths=None) -> torch.Tensor:
        return prepare_batch(wave, sample_rate, lengths, resampler=self._resampler,
                             clip_samples=self.clip_samples,
                             crop_where=self.config["audio"]["crop"], device=self.device)

    # ---- towers ----------------------------------------------------------------------------
    def _audio_pooled(self, wave: torch.Tensor, frames: bool):
        """ClapModel.get_audio_features before its projection: the audio encoder's pooled
        output; its frames are the last hidden state [B, C, freq, time] averaged over freq."""
        out = self.hf.audio_model(input_features=self.features(wave))
        grid = out.last_hidden_state.mean(2).transpose(1, 2) if frames else None
        return out.pooler_output, grid

    def _project_audio(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.hf.audio_projection(pooled)

    def _encode_text(self, tokens: dict) -> torch.Tensor:
        tokens = {k: v.to(self.device) for k, v in tokens.items()}
        out = self.hf.get_text_features(input_ids=tokens["input_ids"],
                                        attention_mask=tokens["attention_mask"])
        # transformers 5.x may return a model output from get_text_features: its pooler_output
        out = out if isinstance(out, torch.Tensor) else out.pooler_output
        return F.normalize(out, dim=-1)

    # ---- persistence -----------------------------------------------------------------------
    def save_pretrained(self, folder: str | Path) -> Path:
        """transformers' own folder: save_pretrained of the model, its tokenizer and a
        ClapFeatureExtractor set for non-fusion input; plain `ClapModel.from_pretrained` and
        `ClapProcessor.from_pretrained` load it (without the order-aware head: no place there)."""
        from transformers import ClapFeatureExtractor, ClapProcessor

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.hf.save_pretrained(str(folder))
        extractor = ClapFeatureExtractor(**self.feature_settings, truncation="rand_trunc",
                                         padding="repeatpad")
        ClapProcessor(feature_extractor=extractor,
                      tokenizer=self.tokenizer.transformers).save_pretrained(str(folder))
        return folder

    def _write_files(self, directory: Path, config: dict) -> None:
        """DIR/hf/ (`save_pretrained`), DIR/audio_head.safetensors with a head; config.json
        records the subfolder."""
        self.save_pretrained(directory / HF_SUBDIR)
        if self.audio_head is not None:
            write_safetensors(directory / HEAD_FILE, self.head_state())
        config["hf_dir"] = HF_SUBDIR
        config.pop("weights", None)
