"""Training-test fixtures, imported by the conftest of tests/train and tests/known_issues: tiny
shards built by the real pipeline from the synthetic default, and a clean Accelerate state for
every in-process run."""
from __future__ import annotations

from pathlib import Path

import pytest

from tiny_build import build_tiny_data


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    """24 train groups per stage in 6 shards at 16 kHz, FLAC members (read-only: copy it)."""
    return build_tiny_data(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(autouse=True)
def fresh_accelerate_state():
    """Accelerate keeps process-wide singletons; each in-process run starts from scratch."""
    yield
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(True)
    GradientState._reset_state()
