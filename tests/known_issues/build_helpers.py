"""Tiny builds for the regression tests (importable from a subprocess too)."""
from __future__ import annotations


def quick_config(root, out, **kw):
    """A build of stage b at 16 kHz, 1 s samples, 2 groups per shard: about a second."""
    from teminal.pipeline.compose import ComposeConfig
    from teminal.pipeline.config import BuildConfig

    compose = kw.pop("compose", None) or ComposeConfig(sample_rate=16000, clip_seconds=1.0)
    base = dict(out=str(out), root=str(root), stages=("b",), shard_size=2, compose=compose)
    return BuildConfig(**{**base, **kw})


def quick_build(root, out, **kw):
    from teminal.pipeline.build import run_build

    return run_build(quick_config(root, out, **kw), progress=False, log=lambda *_: None)
