"""Family "hf": transformers' `ClapModel` (laion/clap-htsat-unfused, larger_clap_general, ...)
from a local `save_pretrained` folder, behind the AudioTextModel interface.

    hf:DIR[?text=TOKDIR]   DIR: config.json + model.safetensors (what ClapModel.save_pretrained
                           writes; a pytorch_model.bin is read only when it holds tensors
                           alone, see teminal.models.tensor_files), its tokenizer files
                           (tokenizer.json, or vocab.json + merges.txt; else from TOKDIR) and
                           the ClapFeatureExtractor settings (processor_config.json or
                           preprocessor_config.json; CLAP's defaults when absent)

Audio features are computed in torch, on the model's device, with ClapFeatureExtractor's
definition for non-fusion models ("rand_trunc" + "repeatpad": power spectrogram of a periodic
Hann window, centre-padded by reflection, slaney mel filters from transformers' own
`mel_filter_bank`, 10 log10 with a 1e-10 floor). Unlike the extractor, long clips are cut
deterministically (centre window) rather than at random. Fusion checkpoints (4-channel input,
clap-htsat-fused) are refused with a clear message.

The parameters are those of `self.hf` under transformers' own names, so `--trainable` patterns
read like `text_model.encoder.layer.11.*`, and `save` writes DIR/hf/ with save_pretrained: that
folder loads with plain `transformers.ClapModel.from_pretrained`.
"""
from __future__ import annotations

import contextlib
import copy
import json
import logging
import os
import pickle
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from teminal.models import trainable
from teminal.models.audio_input import Resampler, prepare_batch
from teminal.models.errors import MissingFile, ModelFilesNotFound, ModelSpecError
from teminal.models.interface import weights_sha256_of
from teminal.models.registry import CONFIG_FILE, ParsedSpec
from teminal.models.tensor_files import load_tensors, needs_full_pickle

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

log = logging.getLogger(__name__)

HF_SUBDIR = "hf"
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
PREPROCESSOR_FILE = "preprocessor_config.json"
PROCESSOR_FILE = "processor_config.json"
TEXT_MAX_LENGTH = 77  # LAION-CLAP's tokenizer length
HOWTO = ("on a machine with internet: `hf download laion/clap-htsat-unfused --local-dir DIR` "
         "(or ClapModel.from_pretrained(id).save_pretrained(DIR) and ClapProcessor.from_pretrained"
         "(id).save_pretrained(DIR)), copy DIR here, then pass --model hf:DIR")
# ClapFeatureExtractor's defaults: 48 kHz, 10 s, 64 mel bins, 1024-point FFT, hop 480, 0-14 kHz
FEATURE_DEFAULTS = {"feature_size": 64, "sampling_rate": 48000, "hop_length": 480,
                    "max_length_s": 10, "fft_window_size": 1024, "frequency_min": 0,
                    "frequency_max": 14000}


class ClapMelFeatures(nn.Module):
    """[B, T] waveform -> [B, 1, frames, mel] log-mel input of ClapAudioModel (non-fusion)."""

    def __init__(self, settings: dict):
        super().__init__()
        from transformers.audio_utils import mel_filter_bank

        s = {**FEATURE_DEFAULTS, **{k: settings[k] for k in FEATURE_DEFAULTS if k in settings}}
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


def default_trainable(hf_config) -> list[str]:
    """TeminAL's subset on a transformers CLAP: the last text layer, the pooler and the text
    projection; the last audio stage, its final norm and the audio projection; the temperature."""
    last_text = hf_config.text_config.num_hidden_layers - 1
    last_audio = len(hf_config.audio_config.depths) - 1
    return [f"text_model.encoder.layer.{last_text}.*", "text_model.pooler.*",
            "text_projection.*", f"audio_model.audio_encoder.layers.{last_audio}.*",
            "audio_model.audio_encoder.norm.*", "audio_projection.*", "logit_scale_a"]


class HfClapModel(nn.Module):
    """A transformers ClapModel with torch audio features, a tokenizer and a trainable subset."""

    def __init__(self, hf_model, tokenizer, features: dict, config: dict):
        super().__init__()
        if getattr(hf_model.config.audio_config, "enable_fusion", False):
            raise ModelSpecError(
                f"{config.get('source')}: a feature-fusion CLAP (enable_fusion=true, e.g. "
                "laion/clap-htsat-fused) needs 4-channel fusion input, which this adapter does "
                "not build; use a non-fusion checkpoint such as laion/clap-htsat-unfused")
        self.hf = hf_model
        self.tokenizer = tokenizer
        self.feature_settings = {**FEATURE_DEFAULTS, **{k: features[k] for k in FEATURE_DEFAULTS
                                                        if k in features}}
        self.features = ClapMelFeatures(self.feature_settings)
        self.config = copy.deepcopy(config)
        self.config["family"] = "hf"
        self.config.setdefault("trainable", default_trainable(hf_model.config))
        self.config.setdefault("audio", {}).setdefault("crop", "center")
        self.config["features"] = dict(self.feature_settings)
        self._resampler = Resampler(self.sample_rate)
        max_pos = getattr(hf_model.config.text_config, "max_position_embeddings", 514)
        self.text_max_length = min(TEXT_MAX_LENGTH, int(max_pos) - 2)

    # ---- shape -----------------------------------------------------------------------------
    family = "hf"

    @property
    def weights_sha256(self) -> str:
        return weights_sha256_of(self.config.get("weights"))

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
    def device(self) -> torch.device:
        return self.hf.logit_scale_a.device

    # ---- inputs ----------------------------------------------------------------------------
    def tokenize(self, texts: list[str]) -> dict[str, torch.Tensor]:
        if isinstance(texts, str):
            raise TypeError("tokenize takes a list of strings, not one string")
        enc = self.tokenizer(list(texts), padding="max_length", truncation=True,
                             max_length=self.text_max_length, return_tensors="pt")
        return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}

    def prepare_audio(self, wave, sample_rate=None, lengths=None) -> torch.Tensor:
        return prepare_batch(wave, sample_rate, lengths, resampler=self._resampler,
                             clip_samples=self.clip_samples,
                             crop_where=self.config["audio"]["crop"], device=self.device)

    # ---- embeddings ------------------------------------------------------------------------
    def forward(self, audio=None, text_tokens=None, sample_rate=None):
        audio_emb = None if audio is None else self._encode_audio(
            self.prepare_audio(audio, sample_rate))
        text_emb = None if text_tokens is None else self._encode_text(text_tokens)
        return audio_emb, text_emb

    def embed_audio(self, wave, sample_rate, lengths=None) -> torch.Tensor:
        return self._encode_audio(self.prepare_audio(wave, sample_rate, lengths))

    def embed_text(self, texts: list[str]) -> torch.Tensor:
        if len(texts) == 0:
            return torch.zeros(0, self.embed_dim, device=self.device)
        return self._encode_text(self.tokenize(texts))

    def logit_scale(self) -> torch.Tensor:
        """exp(logit_scale_a) clamped to 100 (transformers keeps a second, logit_scale_t, for
        text->audio logits; one temperature for both directions, as for the LAION family)."""
        return self.hf.logit_scale_a.exp().clamp(max=100.0)

    def _encode_audio(self, wave: torch.Tensor) -> torch.Tensor:
        out = self.hf.get_audio_features(input_features=self.features(wave))
        return F.normalize(_tensor(out), dim=-1)

    def _encode_text(self, tokens: dict) -> torch.Tensor:
        tokens = {k: v.to(self.device) for k, v in tokens.items()}
        out = self.hf.get_text_features(input_ids=tokens["input_ids"],
                                        attention_mask=tokens["attention_mask"])
        return F.normalize(_tensor(out), dim=-1)

    # ---- training subset -------------------------------------------------------------------
    def set_trainable(self, patterns=None) -> tuple[int, int]:
        patterns = trainable.resolve(patterns, self.config["trainable"])
        return trainable.apply(self.hf, patterns, f"hf ({self.config.get('source')})")

    def named_weights(self) -> dict[str, torch.nn.Parameter]:
        """Every parameter under transformers' own names (those --trainable patterns match)."""
        return dict(self.hf.named_parameters())

    def trainable_names(self) -> list[str]:
        return [n for n, p in self.named_weights().items() if p.requires_grad]

    def train(self, mode: bool = True):
        super().train(mode)
        trainable.freeze_frozen_norms(self.hf)
        return self

    # ---- persistence -----------------------------------------------------------------------
    def save(self, directory, extra: dict | None = None) -> Path:
        """DIR/hf/: save_pretrained of the model, its tokenizer and a ClapFeatureExtractor set
        for non-fusion input (loads with plain transformers); DIR/config.json: family "hf",
        the trainable subset and `extra` (the training provenance)."""
        from transformers import ClapFeatureExtractor, ClapProcessor

        directory = Path(directory)
        hf_dir = directory / HF_SUBDIR
        hf_dir.mkdir(parents=True, exist_ok=True)
        self.hf.save_pretrained(str(hf_dir))
        extractor = ClapFeatureExtractor(**self.feature_settings, truncation="rand_trunc",
                                         padding="repeatpad")
        ClapProcessor(feature_extractor=extractor, tokenizer=self.tokenizer).save_pretrained(
            str(hf_dir))
        config = copy.deepcopy(self.config)
        config.update(extra=dict(extra or {}), hf_dir=HF_SUBDIR)
        config.pop("weights", None)
        tmp = directory / (CONFIG_FILE + ".tmp")
        tmp.write_text(json.dumps(config, indent=2, default=str) + "\n")
        tmp.replace(directory / CONFIG_FILE)
        return directory


def _tensor(out) -> torch.Tensor:
    """transformers 5.x may return a model output from get_*_features: its pooler_output."""
    return out if isinstance(out, torch.Tensor) else out.pooler_output


# ---- loading -------------------------------------------------------------------------------

def _tokenizer_files_present(folder: Path) -> bool:
    return (folder / "tokenizer.json").is_file() or all(
        (folder / f).is_file() for f in ("vocab.json", "merges.txt"))


def _missing(folder: Path, text_dir: Path | None) -> list[MissingFile]:
    missing = []
    if not (folder / CONFIG_FILE).is_file():
        missing.append(MissingFile("transformers ClapModel config", str(folder / CONFIG_FILE),
                                   HOWTO))
    if not any((folder / w).is_file() for w in WEIGHT_FILES):
        missing.append(MissingFile("transformers ClapModel weights",
                                   str(folder / WEIGHT_FILES[0]), HOWTO))
    tok = text_dir or folder
    if not _tokenizer_files_present(tok):
        missing.append(MissingFile("CLAP tokenizer (tokenizer.json, or vocab.json + merges.txt)",
                                   str(tok), HOWTO + " (or pass hf:DIR?text=TOKENIZER_DIR)"))
    return missing


def _load_tokenizer(folder: Path):
    from transformers import AutoTokenizer, RobertaTokenizer

    if (folder / "tokenizer_config.json").is_file():
        return AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    return RobertaTokenizer.from_pretrained(str(folder), local_files_only=True)


def _read_features(folder: Path) -> dict:
    """The feature extractor's settings: preprocessor_config.json (transformers 4.x layout),
    else the "feature_extractor" entry of processor_config.json (5.x), else CLAP's defaults."""
    path = folder / PREPROCESSOR_FILE
    if path.is_file():
        return json.loads(path.read_text())
    path = folder / PROCESSOR_FILE
    if path.is_file():
        entry = json.loads(path.read_text()).get("feature_extractor")
        if isinstance(entry, dict):
            return entry
    log.warning("%s has no feature extractor settings (%s or %s): using ClapFeatureExtractor's "
                "defaults (48 kHz, 10 s, 64 mel bins)", folder, PREPROCESSOR_FILE, PROCESSOR_FILE)
    return dict(FEATURE_DEFAULTS)


def load_folder(folder: Path, text_dir: Path | None, config: dict, spec: str) -> HfClapModel:
    missing = _missing(folder, text_dir)
    if missing:
        raise ModelFilesNotFound(spec, missing)
    from transformers import ClapConfig, ClapModel as TransformersClap

    hf_config = ClapConfig.from_pretrained(str(folder), local_files_only=True)
    if getattr(hf_config.audio_config, "enable_fusion", False):
        raise ModelSpecError(
            f"{spec}: a feature-fusion CLAP (enable_fusion=true, e.g. laion/clap-htsat-fused) "
            "needs 4-channel fusion input, which this adapter does not build; use a non-fusion "
            "checkpoint such as laion/clap-htsat-unfused")
    weights = next(folder / w for w in WEIGHT_FILES if (folder / w).is_file())
    # safetensors is read first when present; a pickle file only with tensors (or trusted)
    source, trusted = str(folder), {}
    if weights.suffix == ".bin" and needs_full_pickle(weights):
        # transformers 5.24 reads .bin files with weights_only=True whatever it is told
        state = load_tensors(weights)
        source, trusted = None, {"config": hf_config, "state_dict": {
            k: v for k, v in state.items() if isinstance(v, torch.Tensor)}}
    try:
        with _quiet_progress():  # a bar for reading a local file is noise in every log
            hf = TransformersClap.from_pretrained(source, local_files_only=True, **trusted)
    except (OSError, ValueError, RuntimeError, pickle.UnpicklingError) as e:
        raise ModelSpecError(f"{spec}: cannot load the ClapModel in {folder}: "
                             f"{' '.join(str(e).split())[:300]}") from None
    config = {**config, "source": spec, "weights": str(weights.resolve()),
              "name": config.get("name") or f"hf-{folder.name}"}
    model = HfClapModel(hf, _load_tokenizer(text_dir or folder), _read_features(folder), config)
    log.info("loaded hf CLAP (%.1f M parameters) from %s",
             sum(p.numel() for p in hf.parameters()) / 1e6, folder)
    return model


@contextlib.contextmanager
def _quiet_progress():
    from transformers.utils import logging as hf_logging

    was = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was:
            hf_logging.enable_progress_bar()


def load(parsed: ParsedSpec) -> HfClapModel:
    """hf:DIR (or a plain save_pretrained folder passed as a path)."""
    text = parsed.options.get("text")
    return load_folder(parsed.path, Path(text).expanduser() if text else None,
                       {"extra": {}}, parsed.spec)


def load_checkpoint(parsed: ParsedSpec) -> HfClapModel:
    """A project checkpoint folder of family hf (written by HfClapModel.save)."""
    saved = dict(parsed.checkpoint)
    folder = parsed.path / saved.get("hf_dir", HF_SUBDIR)
    keep = {k: saved[k] for k in ("name", "trainable", "audio", "extra") if k in saved}
    return load_folder(folder, None, keep, str(parsed.path))
