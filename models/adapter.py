"""`AudioTextAdapter`: what every family's adapter shares (teminal.models.interface).

A family wraps its library's own model (laion-clap's `CLAP`, transformers' `ClapModel`,
msclap's `CLAP`) as `backbone` and says how to reach its parts:

    _log_logit_scale()          the learned log inverse temperature (a parameter of backbone)
    _audio_pooled(wave, frames) the audio tower's pooled features [B, C] before the projection,
                                and with frames=True its frame-level features [B, T, C] too
    _project_audio(pooled)      -> [B, D] in the joint space (not yet normalised)
    _encode_text(tokens)        -> [B, D], L2-normalised
    audio_feature_dim           C above (the order-aware head's input width)
    sample_rate, clip_samples, embed_dim, prepare_audio, tokenizer
    _write_files(dir, config)   its weights and tokenizer files (save writes config.json)
    _load_backbone_weights(state, source)

The base holds the rest once: `forward`, `embed_audio`/`embed_text`, `logit_scale` (one cap,
MAX_LOGIT_SCALE), the trainable subset (`set_trainable`, `named_weights`, `trainable_names`),
`save(dir, provenance)` and the order-aware audio head (teminal.models.heads) on every family:

    e = normalize(project(pooled) + head(tokens))

where tokens are K segments of the clip encoded by the same tower ("segments") or K time bins of
its frame-level features ("frames"). The head's output layers start at zero, so adding one
changes no embedding, bit for bit.
"""
from __future__ import annotations

import copy
import json
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from teminal.models import trainable
from teminal.models.heads import HeadSpec, TemporalHead, frame_tokens, split_segments
from teminal.models.interface import weights_sha256_of
from teminal.models.provenance import TrainingProvenance
from teminal.models.registry import CONFIG_FILE

# CLAP's learned inverse temperature, exp'ed, is clamped here (CLIP's cap) in every family
MAX_LOGIT_SCALE = 100.0
WEIGHTS_FILE = "model.safetensors"
HEAD_PREFIX = "audio_head."


class AudioTextAdapter(nn.Module):
    """The shared body of every family's adapter; see the module docstring for what a family
    provides. `config` is the resolved spec (JSON): what rebuilds the architecture, plus
    "source", "weights" and "extra" (the training provenance, {} for an untrained model)."""

    family: str = ""                  # a name in teminal.models.registry.FAMILIES
    supports_audio_head: bool = True  # every family here takes an order-aware head

    def __init__(self, config: dict):
        super().__init__()
        self.config = copy.deepcopy(config)
        self.audio_head: TemporalHead | None = None

    # ---- what a family provides ------------------------------------------------------------
    @property
    def backbone(self) -> nn.Module:
        """The library's own model: its parameter names are the names --trainable sees."""
        raise NotImplementedError

    def _log_logit_scale(self) -> torch.Tensor:
        raise NotImplementedError

    def _audio_pooled(self, wave: torch.Tensor, frames: bool
                      ) -> tuple[torch.Tensor, torch.Tensor | None]:
        raise NotImplementedError

    def _project_audio(self, pooled: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _encode_text(self, tokens) -> torch.Tensor:
        raise NotImplementedError

    @property
    def audio_feature_dim(self) -> int:
        raise NotImplementedError

    def _write_files(self, directory: Path, config: dict) -> None:
        raise NotImplementedError

    def _load_backbone_weights(self, state: dict[str, torch.Tensor], source: str) -> None:
        raise NotImplementedError

    # ---- shared properties -----------------------------------------------------------------
    @property
    def weights_sha256(self) -> str:
        """sha256 of the file the weights were loaded from ("random-init" for none)."""
        return weights_sha256_of(self.config.get("weights"))

    @property
    def device(self) -> torch.device:
        return self._log_logit_scale().device

    @property
    def name(self) -> str:
        return str(self.config.get("name") or self.config.get("source") or self.family)

    # ---- inputs and embeddings -------------------------------------------------------------
    def tokenize(self, texts: list[str]):
        """Token ids for the text tower (on CPU; `forward` moves them)."""
        if isinstance(texts, str):
            raise TypeError("tokenize takes a list of strings, not one string")
        return self.tokenizer(list(texts))

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
        """exp(the learned log inverse temperature), clamped to at most MAX_LOGIT_SCALE."""
        return self._log_logit_scale().exp().clamp(max=MAX_LOGIT_SCALE)

    def _encode_audio(self, wave: torch.Tensor) -> torch.Tensor:
        """A fitted batch [B, clip_samples] -> L2-normalised [B, D], through the head if any."""
        head = self.audio_head
        want_frames = head is not None and head.spec.source == "frames"
        pooled, frames = self._audio_pooled(wave, want_frames)
        z = self._project_audio(pooled)
        if head is not None:
            z = z + head(self._head_tokens(wave, frames))
        return F.normalize(z, dim=-1)

    def _head_tokens(self, wave: torch.Tensor, frames: torch.Tensor | None) -> torch.Tensor:
        k = self.audio_head.spec.tokens
        if self.audio_head.spec.source == "frames":
            return frame_tokens(frames, k)
        segments, _ = self._audio_pooled(split_segments(wave, k), False)
        return segments.reshape(wave.shape[0], k, -1)

    # ---- the order-aware audio head --------------------------------------------------------
    def _init_head(self) -> None:
        """Build the head the config names (a checkpoint's; its weights are loaded next)."""
        spec = HeadSpec.parse(self.config.get("audio_head"))
        if spec is not None:
            self._build_head(spec)

    def _build_head(self, spec: HeadSpec) -> None:
        self.audio_head = TemporalHead(spec, self.audio_feature_dim, self.embed_dim)
        self.config["audio_head"] = spec.to_dict()

    def add_audio_head(self, value="temporal") -> bool:
        """Give a pooled model an order-aware head (a preset name or a dict, see HeadSpec); a
        fresh head leaves every embedding exactly as it was. Seeded from the config's seed, so
        the same model and spec give the same head. Returns False (and changes nothing) when the
        model already has this head or `value` is "pooled"/None; a different spec than the
        existing head's raises ValueError, and so does a model that takes no head
        (`supports_audio_head` false)."""
        spec = HeadSpec.parse(value)
        if spec is None:
            return False
        if not self.supports_audio_head:
            raise ValueError(f"model {self.name!r} ({self.family}) has no order-aware audio "
                             f"head option")
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

    # ---- training subset -------------------------------------------------------------------
    def default_trainable(self) -> list[str]:
        """The family's default subset (config "trainable"), and the head when there is one."""
        default = list(self.config.get("trainable") or [])
        if self.audio_head is not None:
            default.append(HEAD_PREFIX + "*")
        return default

    def set_trainable(self, patterns: list[str] | str | None = None) -> tuple[int, int]:
        """Train the parameters whose names match `patterns` (globs, or `re:` regexes; see
        teminal.models.trainable), freeze the rest; None: `default_trainable()`, and the word
        "default" among `patterns` stands for it. The audio front end (STFT, mel filters) is
        always frozen. Returns (n_trainable, n_total) in scalars. Call it before
        `accelerator.prepare`."""
        patterns = trainable.resolve(patterns, self.default_trainable())
        counts = trainable.apply_named(self.named_weights(), patterns,
                                       f"{self.name!r} ({self.family})", "model.named_weights()")
        trainable.freeze_frozen_norms(self.backbone)
        return counts

    def named_weights(self) -> dict[str, nn.Parameter]:
        """Every parameter under the name it is saved by: the library's own names, and
        `audio_head.*` for the head."""
        named = dict(self.backbone.named_parameters())
        if self.audio_head is not None:
            named.update({HEAD_PREFIX + n: p for n, p in self.audio_head.named_parameters()})
        return named

    def trainable_names(self) -> list[str]:
        return [n for n, p in self.named_weights().items() if p.requires_grad]

    def train(self, mode: bool = True):
        super().train(mode)
        trainable.freeze_frozen_norms(self.backbone)
        return self

    # ---- persistence -----------------------------------------------------------------------
    def save(self, directory: str | Path,
             provenance: TrainingProvenance | None = None) -> Path:
        """A checkpoint folder `load_model` reloads: the family's files and `config.json` (the
        resolved spec, with the training provenance under "extra"). Returns the folder."""
        if provenance is not None and not isinstance(provenance, TrainingProvenance):
            raise TypeError(f"save(directory, provenance): provenance is a TrainingProvenance "
                            f"(teminal.models.provenance) or None, not "
                            f"{type(provenance).__name__}; wrap a dict with "
                            f"TrainingProvenance.from_dict(...)")
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        config = copy.deepcopy(self.config)
        config["extra"] = provenance.to_dict() if provenance is not None else {}
        self._write_files(directory, config)
        write_json(directory / CONFIG_FILE, config)
        return directory

    def head_state(self) -> dict[str, torch.Tensor]:
        """The head's weights under their saved names (`audio_head.*`); {} without a head."""
        if self.audio_head is None:
            return {}
        return {HEAD_PREFIX + k: v for k, v in self.audio_head.state_dict().items()}

    def state_dict_for_save(self) -> dict[str, torch.Tensor]:
        """The library's own state dict (loads into the plain library model), plus
        `audio_head.*` when there is a head."""
        return {**self.backbone.state_dict(), **self.head_state()}

    def load_weights(self, state: dict[str, torch.Tensor], source: str) -> None:
        """Load saved weights (the library's names, `audio_head.*` for the head) strictly; a
        mismatch names the keys and `source`."""
        head = {k: v for k, v in state.items() if k.startswith(HEAD_PREFIX)}
        self.load_head_weights(head, source)
        self._load_backbone_weights({k: v for k, v in state.items()
                                     if not k.startswith(HEAD_PREFIX)}, source)

    def load_head_weights(self, head: dict[str, torch.Tensor], source: str) -> None:
        """The `audio_head.*` weights of `source` into the head the config names; weights
        without a head in the config, or a head without weights, is an error naming both."""
        from teminal.models.errors import ModelSpecError

        if head and self.audio_head is None:
            raise ModelSpecError(f"{source} holds audio_head.* weights but its config has no "
                                 "audio_head section; was config.json replaced?")
        if self.audio_head is None:
            return
        if not head:
            raise ModelSpecError(f"the config of {source} names an audio head "
                                 f"({self.config['audio_head']}) but the weights hold none")
        try:
            self.audio_head.load_state_dict({k[len(HEAD_PREFIX):]: v for k, v in head.items()},
                                            strict=True)
        except RuntimeError as e:
            raise ModelSpecError(f"the audio_head weights in {source} do not fit "
                                 f"{self.config['audio_head']}: {e}") from None


def load_strictly(module: nn.Module, state: dict[str, torch.Tensor], source: str, what: str,
                  hint: str) -> None:
    """`state` into `module`, every key and shape matching; a mismatch is one ModelSpecError
    naming `source`, `what` it should be, a few of the keys and `hint` (the likely cause)."""
    from teminal.models.errors import ModelSpecError

    try:
        result = module.load_state_dict(state, strict=False)
    except RuntimeError as e:  # shape mismatches
        raise ModelSpecError(f"the weights in {source} do not fit {what}: "
                             f"{' '.join(str(e).split())[:400]}") from None
    if result.missing_keys or result.unexpected_keys:
        raise ModelSpecError(
            f"the weights in {source} do not fit {what}: {len(result.missing_keys)} missing "
            f"(e.g. {result.missing_keys[:5]}), {len(result.unexpected_keys)} unexpected "
            f"(e.g. {result.unexpected_keys[:5]}). {hint}")


def write_json(path: Path, obj: dict) -> None:
    """Write a JSON file atomically (a reader never sees half of it)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, default=str) + "\n")
    tmp.replace(path)


def write_safetensors(path: Path, state: dict[str, torch.Tensor]) -> None:
    """Tensors (detached, contiguous, on CPU) to a safetensors file, atomically; the same
    tensors give the same bytes."""
    from safetensors.torch import save_file

    state = {k: v.detach().contiguous().cpu() for k, v in state.items()}
    tmp = path.with_name(path.name + ".tmp")
    # one metadata key: safetensors writes a metadata dict in hash order, which differs from
    # process to process, so two keys made the same weights two different files
    save_file(state, str(tmp), metadata={"format": "pt"})
    tmp.replace(path)


def read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    """A checkpoint's safetensors file; a damaged one is one message naming it."""
    from safetensors.torch import load_file

    from teminal.models.errors import ModelSpecError

    try:
        return load_file(str(path))
    except Exception as e:  # truncated or overwritten: safetensors' own message names no file
        raise ModelSpecError(f"{path} is not a readable safetensors file "
                             f"({' '.join(str(e).split())[:200]}): the checkpoint is damaged; "
                             f"export it again (rerun the training with --resume) or use "
                             f"another checkpoint") from None


def copy_files(files: list[Path], folder: Path) -> None:
    """Copy tokenizer files into a checkpoint's folder (a file already there stays)."""
    import shutil

    folder.mkdir(parents=True, exist_ok=True)
    for f in files:
        if f.resolve() != (folder / f.name).resolve():
            shutil.copyfile(f, folder / f.name)
