"""What trainers and evaluators may use of a model: the `AudioTextModel` protocol.

Every family in `teminal.models.registry` returns an `nn.Module` that satisfies it (the
conformance suite, tests/models/test_conformance.py, checks each one; they share
`teminal.models.adapter.AudioTextAdapter`), and so does every test double of `teminal.testing`,
so no caller needs to probe for an attribute:

    model.embed_audio(wave[B, T], sample_rate[, lengths]) -> [B, D]   L2-normalised
    model.embed_text(list_of_str)                          -> [B, D]   L2-normalised
    model(audio=[B, T], text_tokens=model.tokenize(texts), sample_rate=...) -> (audio | None, text | None)
    model.logit_scale()                                    -> exp'ed inverse temperature (<= 100)
    model.set_trainable(patterns | None) -> (n_trainable, n_total); model.trainable_names()
    model.save(dir, provenance) -> dir     a project checkpoint folder that load_model reloads
    model.family, model.weights_sha256     what result files record
    model.supports_audio_head              whether add_audio_head(spec) can give it an
                                           order-aware head (else add_audio_head raises)
    model.eval(), model.train(mode), model.training, model.device

`forward` is what DDP must call (through `accelerator.prepare`) so gradients synchronise. The
embedding helpers do not switch off autograd: evaluators wrap them in `torch.no_grad()`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Protocol, runtime_checkable

import torch

from teminal.manifests.digests import file_sha256  # noqa: F401  (the one file hash)

RANDOM_INIT = "random-init"  # weights_sha256 of a model that was not loaded from a file


@runtime_checkable
class AudioTextModel(Protocol):
    config: dict

    @property
    def family(self) -> str: ...            # a name in teminal.models.registry.FAMILIES

    @property
    def weights_sha256(self) -> str: ...    # of the file the weights came from, or RANDOM_INIT

    @property
    def sample_rate(self) -> int: ...       # the rate the audio tower expects

    @property
    def clip_samples(self) -> int: ...      # input length at that rate (longer: centre crop)

    @property
    def embed_dim(self) -> int: ...

    @property
    def device(self) -> torch.device: ...

    @property
    def supports_audio_head(self) -> bool: ...

    training: bool

    def eval(self): ...

    def train(self, mode: bool = True): ...

    def tokenize(self, texts: list[str]): ...

    def prepare_audio(self, wave: torch.Tensor, sample_rate: int | None = None,
                      lengths: torch.Tensor | None = None) -> torch.Tensor: ...

    def forward(self, audio: torch.Tensor | None = None, text_tokens=None,
                sample_rate: int | None = None): ...

    def embed_audio(self, wave: torch.Tensor, sample_rate: int,
                    lengths: torch.Tensor | None = None) -> torch.Tensor: ...

    def embed_text(self, texts: list[str]) -> torch.Tensor: ...

    def logit_scale(self) -> torch.Tensor: ...

    def set_trainable(self, patterns: list[str] | str | None = None) -> tuple[int, int]: ...

    def trainable_names(self) -> list[str]: ...

    def named_weights(self) -> dict[str, torch.nn.Parameter]: ...  # the names --trainable sees

    def add_audio_head(self, value="temporal") -> bool: ...   # teminal.models.heads.HeadSpec

    def save(self, directory: str | Path, provenance=None) -> Path: ...  # TrainingProvenance | None


_SHA_CACHE: dict[tuple[str, int, int], str] = {}


def weights_sha256_of(path: str | Path | None) -> str:
    """sha256 of a weights file (cached by path, size and mtime: real checkpoints are GBs),
    RANDOM_INIT for None."""
    if not path:
        return RANDOM_INIT
    p = Path(path)
    st = p.stat()
    key = (str(p.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _SHA_CACHE:
        _SHA_CACHE[key] = file_sha256(p)
    return _SHA_CACHE[key]
