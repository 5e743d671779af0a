"""Fixtures of the evaluation tests; the fakes bound to the evaluators' wordings and the coded
test sets live in coded.py (tests/evaluate), the fakes themselves in teminal.testing."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # coded.py

from coded import FakeModel, OrderBlindModel, make_testset  # noqa: E402
from teminal.testing import RandomModel  # noqa: E402


@pytest.fixture
def testset():
    return make_testset()


@pytest.fixture
def fakes():
    return {"perfect": FakeModel, "order_blind": OrderBlindModel, "random": RandomModel}
