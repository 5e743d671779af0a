"""Fixtures: the small model (built once per session; tests that change it take a copy) and a
fake RoBERTa tokenizer folder (teminal.testing.write_fake_roberta_tokenizer)."""
from __future__ import annotations

import copy
from pathlib import Path

import pytest

from teminal.testing import write_fake_roberta_tokenizer


@pytest.fixture(scope="session")
def small_model_session():
    from teminal.models import load_model

    return load_model("small")


@pytest.fixture
def small_model(small_model_session):
    """A private copy of the small model, in eval mode."""
    return copy.deepcopy(small_model_session).eval()


@pytest.fixture
def roberta_tokenizer_dir(tmp_path) -> Path:
    return write_fake_roberta_tokenizer(tmp_path / "roberta-tokenizer")
