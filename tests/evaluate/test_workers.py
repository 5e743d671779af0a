"""DecodePool: an ordered, bounded map over worker processes (or inline with 0 workers)."""
from __future__ import annotations

import math

import pytest

from teminal.evaluate.workers import DecodePool, decode_ahead, default_workers


@pytest.mark.parametrize("workers", [0, 2])
def test_results_come_back_in_job_order(workers):
    with DecodePool(workers, ahead=3) as pool:
        assert list(pool.map(abs, range(-20, 0))) == list(range(20, 0, -1))
        assert pool.stats.jobs == 20 and pool.stats.clips == 20


@pytest.mark.parametrize("workers", [0, 1])
def test_a_failing_job_raises_at_its_place(workers):
    seen = []
    with DecodePool(workers, ahead=2) as pool:
        with pytest.raises(ValueError, match="math domain error"):
            for x in pool.map(math.sqrt, [4, 9, -1, 16]):
                seen.append(x)
    assert seen == [2.0, 3.0]


def test_stopping_early_cancels_the_rest():
    with DecodePool(1, ahead=2) as pool:
        it = pool.map(abs, range(-1000, 0))
        assert next(it) == 1000
        it.close()
        assert pool.stats.jobs == 1


def test_negative_workers_say_what_to_pass():
    with pytest.raises(ValueError, match="--workers must be 0"):
        DecodePool(-1)


def test_defaults_leave_a_cpu_for_the_embedding_and_buffer_a_batch():
    assert 1 <= default_workers() <= 8 and 1 <= default_workers("cuda:0") <= 8
    assert decode_ahead(32, 2) == 36 and decode_ahead(0, 0) == 3


def test_a_model_on_the_cpu_decodes_in_the_main_process_by_default():
    """On the CPU the embedding is the bottleneck: a decode worker only takes CPU time from it
    (measured: 0.81 of the embedding-alone rate with one worker, 0.98 serial)."""
    import torch

    from teminal.evaluate.workers import workers_for

    class OnCpu:
        device = torch.device("cpu")

    assert default_workers("cpu") == 0 and workers_for(OnCpu(), None) == 0
    assert workers_for(OnCpu(), 2) == 2
