"""Fixtures of the evaluation tests; the fakes themselves live in teminal.models.testing."""
from __future__ import annotations

import pytest

from teminal.models.testing import FakeModel, OrderBlindModel, RandomModel, make_testset


@pytest.fixture
def testset():
    return make_testset()


@pytest.fixture
def fakes():
    return {"perfect": FakeModel, "order_blind": OrderBlindModel, "random": RandomModel}
