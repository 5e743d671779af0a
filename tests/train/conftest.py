"""Fixtures of the training tests (tests/train/fixtures.py)."""
from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))  # toy_clap.py, tiny_build.py, launch_toy.py, fixtures.py

from fixtures import fresh_accelerate_state, tiny_data  # noqa: E402,F401
