"""Tiny shards built by the real pipeline from the synthetic default (shared by the tests)."""
from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def build_tiny_data(out: Path, classes: int = 4, per_fold: int = 2, shard_size: int = 4,
                    seconds: float = 2.0, codec: str = "flac") -> Path:
    """Synthetic ESC-50 -> shards at 16 kHz: 24 train groups per stage in 6 shards (defaults)."""
    from teminal.pipeline.build import run_build
    from teminal.pipeline.config import BuildConfig
    from teminal.pipeline.compose import ComposeConfig
    from teminal.pipeline.sources.synth import CLASS_NAMES, write_synthetic_esc50

    root = write_synthetic_esc50(out / "src", clips_per_class_per_fold=per_fold,
                                 classes=CLASS_NAMES[:classes])
    run_build(BuildConfig(out=str(out / "data"), root=str(root), shard_size=shard_size,
                          codec=codec,
                          compose=ComposeConfig(sample_rate=16000, clip_seconds=seconds)),
              progress=False, log=lambda *_: None)
    return out / "data"
