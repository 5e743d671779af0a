"""Shared fixtures: the real data folder (skipped when absent) and a small synthetic ESC-50."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

# keep every test single-threaded: the machine's cores are shared
os.environ.setdefault("OMP_NUM_THREADS", "1")

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = (REPO_ROOT / ".." / "shared" / "data").resolve()

# A synthetic set big enough for pairing (12 classes x 5 folds x 2 clips = 120 clips, about 1.5 s)
SYNTH_CLIPS_PER_CLASS_PER_FOLD = 2


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data (real clips and caption files); tests using it skip when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data folder {SHARED_DATA} is absent (it holds the real ESC-50 clips "
                    "and caption files used by these tests)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def esc50_real(shared_data) -> Path:
    """../shared/data/esc50-real: 113 real ESC-50 clips in the official layout."""
    root = shared_data / "esc50-real"
    if not (root / "meta" / "esc50.csv").is_file():
        pytest.skip(f"real ESC-50 clips are absent: no {root / 'meta' / 'esc50.csv'}")
    return root


@pytest.fixture(scope="session")
def synthetic_esc50(tmp_path_factory) -> Path:
    """A small synthetic ESC-50 folder (official layout + SYNTHETIC.md), written once per session.
    Treat it as read-only: copy it before changing anything in it."""
    from teminal.pipeline.sources.synth import write_synthetic_esc50

    out = tmp_path_factory.mktemp("synthetic-esc50") / "ESC-50-master"
    return write_synthetic_esc50(out, seed=0, clips_per_class_per_fold=SYNTH_CLIPS_PER_CLASS_PER_FOLD)


@pytest.fixture(scope="session")
def tiny_hf_dir(tmp_path_factory) -> Path:
    """A tiny random transformers ClapModel + ClapProcessor written with save_pretrained (read
    only: copy it before changing anything)."""
    from teminal.testing import write_tiny_hf_clap

    return write_tiny_hf_clap(tmp_path_factory.mktemp("hf") / "tiny-clap")


@pytest.fixture(scope="session")
def tiny_msclap(tmp_path_factory):
    """version -> (weights .pth in msclap's format, tokenizer folder), written on first use
    (read only). 2023: tiny HTSAT + tiny GPT-2; 2022: the real CNN14 (340 MB) + tiny BERT."""
    from teminal.testing import write_tiny_msclap

    made: dict = {}

    def get(version: str):
        if version not in made:
            made[version] = write_tiny_msclap(tmp_path_factory.mktemp(f"msclap{version}"),
                                              version)
        return made[version]

    return get
