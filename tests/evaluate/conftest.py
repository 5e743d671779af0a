"""Fixtures of the evaluation tests; the fakes themselves live in evaluate_fakes.py."""
from __future__ import annotations

import pytest

from evaluate_fakes import FakeModel, OrderBlindModel, RandomModel, make_testset


@pytest.fixture
def testset():
    return make_testset()


@pytest.fixture
def fakes():
    return {"perfect": FakeModel, "order_blind": OrderBlindModel, "random": RandomModel}
