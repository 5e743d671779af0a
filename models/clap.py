"""`ClapModel`: laion-clap's `CLAP` behind the one interface every trainer and evaluator uses.

    model.embed_audio(wave[B, T], sample_rate) -> [B, D]   L2-normalised
    model.embed_text(list_of_str)              -> [B, D]   L2-normalised
    model(audio=..., text_tokens=...)          -> (audio_emb | None, text_emb | None)

`forward` is what DDP (through `accelerator.prepare`) must call so gradients synchronise; it
takes audio at `sample_rate` (default: the model's rate) and the output of `tokenize`. The
embedding helpers do not switch off autograd: evaluators wrap them in `torch.no_grad()`.

The weights live in `self.clap` under laion-clap's own parameter names, so a saved
`model.safetensors` loads into a plain laion `CLAP` as well.
"""
from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from teminal.models import trainable
from teminal.models.audio_input import Resampler, fit_length
from teminal.models.fft_stft import use_fft_stft
from teminal.models.heads import HeadSpec, TemporalHead, frame_tokens, split_segments
from teminal.models.laion_import import build_clap


MAX_LOGIT_SCALE = 100.0
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
TOKENIZER_SUBDIR = "tokenizer"


class ClapModel(nn.Module):
    """A laion-clap CLAP with a tokenizer, deterministic audio input and a named trainable
    subset. Build it with `teminal.models.load_model`; `config` is the resolved spec (JSON)."""

    def __init__(self, config: dict, tokenizer, text_module: nn.Module | None = None):
        super().__init__()
        self.config = copy.deepcopy(config)
        clap_cfg = self.config["clap"]
        text = self.config.get("text", {})
        self.clap = build_clap(clap_cfg, text.get("roberta_config"), text_module)
        # a Hugging Face encoder tower is pooled as its model card says (laion's BERT path
        # takes the pooler output, which sentence encoders such as MiniLM never trained)
        self._text_pooling = text.get("pooling", "mean") if text.get("encoder") == "hf" else None
        use_fft_stft(self.clap)   # same spectrogram, half the small branch's time (fft_stft.py)
        self.tokenizer = tokenizer
        audio_cfg = clap_cfg["audio_cfg"]
        self._audio_wants_dict = (audio_cfg["model_type"] == "HTSAT"
                                  or audio_cfg.get("model_name") == "Cnn14")
        self._crop = self.config.get("audio", {}).get("crop", "center")
        self._resampler = Resampler(self.sample_rate)
        self._set_spec_augment(self.config.get("audio", {}).get("spec_augment", "laion"))
        self.audio_head: TemporalHead | None = None
        spec = HeadSpec.parse(self.config.get("audio_head"))
        if spec is not None:
            self._build_head(spec)

    # ---- the order-aware audio head (teminal.models.heads) ----------------------------------
    def _build_head(self, spec: HeadSpec) -> None:
        self.audio_head = TemporalHead(spec, int(self.config["clap"]["embed_dim"]),
                                       self.embed_dim)
        self.config["audio_head"] = spec.to_dict()

    def add_audio_head(self, value="temporal") -> bool:
        """Give a pooled model an order-aware head ("temporal" or a dict, see HeadSpec); a fresh
        head leaves every embedding exactly as it was. Seeded from the config's seed, so the same
        model and spec give the same head. Returns False (and changes nothing) when the model
        already has a head or `value` is "pooled"/None; a different spec than the existing
        head's raises ValueError."""
        spec = HeadSpec.parse(value)
        if spec is None:
            return False
        if self.audio_head is not None:
            if self.audio_head.spec != spec:
                raise ValueError(f"this model already has audio head {self.config['audio_head']}"
                                 f"; cannot replace it by {spec.to_dict()}")
            return False
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(self.config.get("seed", 0)) + 1)
            self._build_head(spec)
        self.audio_head.to(self.device)
        self.audio_head.train(self.training)
        return True

    # ---- shape of the model -------------------------------------------------------------
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
    def family(self) -> str:
        """"small" or "laion" (see teminal.models.registry)."""
        from teminal.models.registry import legacy_family

        return self.config.get("family") or legacy_family(self.config)

    @property
    def weights_sha256(self) -> str:
        """sha256 of the file the weights were loaded from ("random-init" for none)."""
        from teminal.models.interface import weights_sha256_of

        return weights_sha256_of(self.config.get("weights"))

    @property
    def device(self) -> torch.device:
        return self.clap.logit_scale_a.device

    # ---- inputs ---------------------------------------------------------------------------
    def tokenize(self, texts: list[str]):
        """Token ids for the text tower: LongTensor[B, L] (BPE transformer) or a dict with
        input_ids and attention_mask (RoBERTa). On CPU; `forward` moves them."""
        if isinstance(texts, str):
            raise TypeError("tokenize takes a list of strings, not one string")
        return self.tokenizer(list(texts))

    def prepare_audio(self, wave: torch.Tensor, sample_rate: int | None = None,
                      lengths: torch.Tensor | None = None) -> torch.Tensor:
        """[B, T] at `sample_rate` -> float32 [B, clip_samples] at the model's rate, on the
        model's device: resampled once for the batch, then repeat-padded or centre-cropped."""
        if wave.dim() != 2:
            raise ValueError(f"audio must be a [batch, samples] tensor, got shape "
                             f"{tuple(wave.shape)} (add a batch dimension for one clip)")
        rate = self.sample_rate if sample_rate is None else int(sample_rate)
        wave = wave.to(self.device, torch.float32)
        if rate != self.sample_rate:
            wave = self._resampler(wave, rate)
            if lengths is not None:
                lengths = torch.as_tensor([self._resampler.new_length(n, rate)
                                           for n in torch.as_tensor(lengths).tolist()])
        return fit_length(wave, self.clip_samples, self._crop, lengths)

    # ---- embeddings -------------------------------------------------------------------------
    def forward(self, audio: torch.Tensor | None = None, text_tokens=None,
                sample_rate: int | None = None):
        """(audio embeddings | None, text embeddings | None), both L2-normalised [B, D].
        `audio` is [B, T] at `sample_rate` (default: the model's own rate)."""
        audio_emb = None if audio is None else self._encode_audio(
            self.prepare_audio(audio, sample_rate))
        text_emb = None if text_tokens is None else self._encode_text(text_tokens)
        return audio_emb, text_emb

    def embed_audio(self, wave: torch.Tensor, sample_rate: int,
                    lengths: torch.Tensor | None = None) -> torch.Tensor:
        """[B, T] waveforms at `sample_rate` -> [B, D]. `lengths` (optional) gives each row's
        valid samples when clips of different durations were zero-padded into one batch."""
        return self._encode_audio(self.prepare_audio(wave, sample_rate, lengths))

    def embed_text(self, texts: list[str]) -> torch.Tensor:
        if len(texts) == 0:
            return torch.zeros(0, self.embed_dim, device=self.device)
        return self._encode_text(self.tokenize(texts))

    def logit_scale(self) -> torch.Tensor:
        """exp(logit_scale_a), CLAP's learned inverse temperature, clamped to at most 100."""
        return self.clap.logit_scale_a.exp().clamp(max=MAX_LOGIT_SCALE)

    def _branch(self, wave: torch.Tensor) -> dict:
        x = {"waveform": wave} if self._audio_wants_dict else wave
        return self.clap.audio_branch(x, mixup_lambda=None, device=wave.device)

    def _encode_audio(self, wave: torch.Tensor) -> torch.Tensor:
        out = self._branch(wave)
        z = self.clap.audio_projection(out["embedding"])
        if self.audio_head is not None:
            z = z + self.audio_head(self._head_tokens(wave, out))
        return F.normalize(z, dim=-1)

    def _head_tokens(self, wave: torch.Tensor, out: dict) -> torch.Tensor:
        k = self.audio_head.spec.tokens
        if self.audio_head.spec.source == "frames":
            return frame_tokens(out["fine_grained_embedding"], k)
        segments = self._branch(split_segments(wave, k))["embedding"]
        return segments.reshape(wave.shape[0], k, -1)

    def _encode_text(self, tokens) -> torch.Tensor:
        if isinstance(tokens, dict):
            tokens = {k: v.to(self.device) for k, v in tokens.items()}
        else:
            tokens = tokens.to(self.device)
        if self._text_pooling is None:
            return F.normalize(self.clap.encode_text(tokens, device=self.device), dim=-1)
        out = self.clap.text_branch(**tokens)
        if self._text_pooling == "pooler":
            pooled = out.pooler_output
        elif self._text_pooling == "cls":
            pooled = out.last_hidden_state[:, 0]
        else:  # the mean over real tokens (padding masked out)
            mask = tokens["attention_mask"].unsqueeze(-1).to(out.last_hidden_state.dtype)
            pooled = (out.last_hidden_state * mask).sum(1) / mask.sum(1).clamp(min=1)
        return F.normalize(self.clap.text_projection(pooled), dim=-1)

    # ---- training subset -------------------------------------------------------------------
    def set_trainable(self, patterns: list[str] | str | None = None) -> tuple[int, int]:
        """Train the parameters whose names match `patterns` (globs, or `re:` regexes; see
        teminal.models.trainable), freeze the rest; None: the spec's default subset. The
        audio front end (STFT, mel filters) is always frozen. Returns (n_trainable, n_total)
        counted in scalars; the word "default" among `patterns` stands for that subset. Call it
        before `accelerator.prepare`."""
        default = list(self.config.get("trainable") or [])
        if self.audio_head is not None:
            default.append("audio_head.*")
        patterns = trainable.resolve(patterns, default)
        counts = trainable.apply_named(self.named_weights(), patterns,
                                       repr(self.config.get("name")), "model.named_weights()")
        trainable.freeze_frozen_norms(self.clap)
        return counts

    def named_weights(self) -> dict[str, nn.Parameter]:
        """Every parameter under its saved name: laion's names, and `audio_head.*` for the head."""
        named = dict(self.clap.named_parameters())
        if self.audio_head is not None:
            named.update({f"audio_head.{n}": p for n, p in self.audio_head.named_parameters()})
        return named

    def trainable_names(self) -> list[str]:
        return [n for n, p in self.named_weights().items() if p.requires_grad]

    def train(self, mode: bool = True):
        super().train(mode)
        trainable.freeze_frozen_norms(self.clap)
        return self

    def _set_spec_augment(self, setting) -> None:
        """'laion': keep laion's SpecAugment (training mode only); false/None: none; a dict:
        SpecAugmentation(time_drop_width, time_stripes_num, freq_drop_width, freq_stripes_num).
        laion's stock one drops up to 64 frames, which crashes torchlibrosa (randint on an
        empty range) when a clip has <= 64 frames, as with the small model's 160 ms hop."""
        branch = self.clap.audio_branch
        if setting == "laion" or not hasattr(branch, "spec_augmenter"):
            return
        if not setting:
            branch.spec_augmenter = nn.Identity()
            return
        from torchlibrosa.augmentation import SpecAugmentation

        branch.spec_augmenter = SpecAugmentation(**setting)

    # ---- persistence ---------------------------------------------------------------------
    def save(self, directory: str | Path, extra: dict | None = None) -> Path:
        """Write `model.safetensors` (laion parameter names) and `config.json` (the resolved
        spec, with `extra` under the key "extra": stage, catalog build id, ...). A RoBERTa
        tokenizer's two files (or a Hugging Face encoder's tokenizer files) are copied into
        `tokenizer/`, so the folder is self-contained."""
        from safetensors.torch import save_file

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        config = copy.deepcopy(self.config)
        config["extra"] = dict(extra or {})
        if hasattr(self.tokenizer, "files"):
            tok_dir = directory / TOKENIZER_SUBDIR
            tok_dir.mkdir(exist_ok=True)
            for f in self.tokenizer.files():
                if f.resolve() != (tok_dir / f.name).resolve():
                    shutil.copyfile(f, tok_dir / f.name)
            config["text"]["dir"] = TOKENIZER_SUBDIR
        state = {k: v.detach().contiguous().cpu() for k, v in self.state_dict_for_save().items()}
        tmp = directory / (WEIGHTS_FILE + ".tmp")
        save_file(state, str(tmp), metadata={"format": "pt", "producer": "teminal.models"})
        tmp.replace(directory / WEIGHTS_FILE)
        tmp = directory / (CONFIG_FILE + ".tmp")
        tmp.write_text(json.dumps(config, indent=2, default=str) + "\n")
        tmp.replace(directory / CONFIG_FILE)
        return directory

    def state_dict_for_save(self) -> dict[str, torch.Tensor]:
        """laion's state dict (loads into a plain laion CLAP), plus `audio_head.*` with a head."""
        state = dict(self.clap.state_dict())
        if self.audio_head is not None:
            state.update({f"audio_head.{k}": v for k, v in self.audio_head.state_dict().items()})
        return state

    def load_weights(self, state_dict: dict[str, torch.Tensor], source: str) -> None:
        """Load laion-named weights strictly, after the known key fixes (see
        teminal.models.laion_checkpoint.fix_keys); a mismatch names the keys and the source."""
        from teminal.models.laion_checkpoint import fix_keys
        from teminal.models.errors import ModelSpecError

        head = {k[len("audio_head."):]: v for k, v in state_dict.items()
                if k.startswith("audio_head.")}
        state_dict = fix_keys({k: v for k, v in state_dict.items()
                               if not k.startswith("audio_head.")}, self.clap)
        if head and self.audio_head is None:
            raise ModelSpecError(f"{source} holds audio_head.* weights but its config has no "
                                 "audio_head section; was config.json replaced?")
        if self.audio_head is not None:
            if not head:
                raise ModelSpecError(f"the config of {source} names an audio head "
                                     f"({self.config['audio_head']}) but the weights hold none")
            try:
                self.audio_head.load_state_dict(head, strict=True)
            except RuntimeError as e:
                raise ModelSpecError(f"the audio_head weights in {source} do not fit "
                                     f"{self.config['audio_head']}: {e}") from None
        try:
            result = self.clap.load_state_dict(state_dict, strict=False)
        except RuntimeError as e:  # shape mismatches
            raise ModelSpecError(f"the weights in {source} do not fit model "
                                 f"{self.config.get('name')!r}: {e}") from None
        if result.missing_keys or result.unexpected_keys:
            raise ModelSpecError(
                f"the weights in {source} do not fit model {self.config.get('name')!r}: "
                f"{len(result.missing_keys)} missing (e.g. {result.missing_keys[:5]}), "
                f"{len(result.unexpected_keys)} unexpected (e.g. {result.unexpected_keys[:5]}). "
                "Is it the architecture the spec says (HTSAT-tiny + RoBERTa, non-fusion)?")
