"""Shared fixtures: tiny shards built by the real pipeline from the synthetic default, and a
clean Accelerate state for every in-process run."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))  # toy_clap.py, tiny_build.py, launch_toy.py

from tiny_build import build_tiny_data  # noqa: E402


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    return build_tiny_data(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(autouse=True)
def fresh_accelerate_state():
    """Accelerate keeps process-wide singletons; each in-process run starts from scratch."""
    yield
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(True)
    GradientState._reset_state()
