"""Fixtures of the regression tests: the training helpers of tests/train (tiny shards built by
the real pipeline, the toy model) and a clean Accelerate state per in-process run."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

TRAIN_TESTS = Path(__file__).resolve().parents[1] / "train"
sys.path.insert(0, str(TRAIN_TESTS))  # toy_clap.py, tiny_build.py, fixtures.py

from fixtures import fresh_accelerate_state, tiny_data  # noqa: E402,F401


@pytest.fixture(scope="session")
def small_source(tmp_path_factory) -> Path:
    """A small synthetic ESC-50 folder (3 classes x 5 folds x 1 clip); read-only: copy it."""
    from teminal.pipeline.sources.synth import CLASS_NAMES, write_synthetic_esc50

    return write_synthetic_esc50(tmp_path_factory.mktemp("small") / "src",
                                 clips_per_class_per_fold=1, classes=CLASS_NAMES[:3])

