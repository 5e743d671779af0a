"""Fixtures of the regression tests: the training helpers of tests/train (tiny shards built by
the real pipeline, the toy model) and a clean Accelerate state per in-process run."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

TRAIN_TESTS = Path(__file__).resolve().parents[1] / "train"
sys.path.insert(0, str(TRAIN_TESTS))  # toy_clap.py, tiny_build.py

from tiny_build import build_tiny_data  # noqa: E402


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    """24 train groups per stage in 6 shards at 16 kHz, FLAC members (read-only: copy it)."""
    return build_tiny_data(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(autouse=True)
def fresh_accelerate_state():
    yield
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(True)
    GradientState._reset_state()


@pytest.fixture(scope="session")
def small_source(tmp_path_factory) -> Path:
    """A small synthetic ESC-50 folder (3 classes x 5 folds x 1 clip); read-only: copy it."""
    from teminal.pipeline.sources.synth import CLASS_NAMES, write_synthetic_esc50

    return write_synthetic_esc50(tmp_path_factory.mktemp("small") / "src",
                                 clips_per_class_per_fold=1, classes=CLASS_NAMES[:3])

