"""The SLURM array recipe (scripts/slurm/build_parts.sbatch) parses and, dry-run, issues
`pipeline build --part i/n` and `pipeline catalog [--merge]` commands the CLI accepts."""
from __future__ import annotations

import os
import shlex
import subprocess
from pathlib import Path

from teminal.pipeline.cli import main

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "slurm" / "build_parts.sbatch"


def dry_run(*args, **env) -> list[list[str]]:
    full = {**os.environ, "DRY_RUN": "1", "DATASET": "clotho", "OUT": "/shared/build", **env}
    done = subprocess.run(["bash", str(SCRIPT), *args], env=full, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return [shlex.split(line) for line in done.stdout.splitlines()]


def accepted_by_the_cli(argv: list[str]) -> None:
    """Click parses and type-checks the options (a bad option raises) without running."""
    assert argv[0] == "pipeline"
    main.commands[argv[1]].make_context(argv[1], argv[2:])


def test_script_parses_as_bash():
    assert subprocess.run(["bash", "-n", str(SCRIPT)]).returncode == 0
    assert "#SBATCH --output" in SCRIPT.read_text()


def test_array_task_builds_its_part_with_the_shared_options():
    (cmd,) = dry_run(DATA_ROOT="/data/clotho", SLURM_ARRAY_TASK_ID="3", SLURM_ARRAY_TASK_COUNT="8",
                     SLURM_CPUS_PER_TASK="4", BUILD_ARGS="--sample-rate 48000 --seed 1")
    assert cmd[:2] == ["pipeline", "build"]
    assert cmd[cmd.index("--part") + 1] == "3/8" and cmd[cmd.index("--workers") + 1] == "4"
    assert cmd[-4:] == ["--sample-rate", "48000", "--seed", "1"]
    accepted_by_the_cli(cmd)


def test_finish_writes_the_catalog_then_merges_with_other_builds():
    catalog, merge = dry_run("finish", MERGE_WITH="/shared/a /shared/b", MERGED="/shared/all")
    assert catalog == ["pipeline", "catalog", "/shared/build"]
    assert merge == ["pipeline", "catalog", "--merge", "/shared/build", "/shared/a", "/shared/b",
                     "--out", "/shared/all"]


def test_missing_settings_say_what_to_set():
    done = subprocess.run(["bash", str(SCRIPT)], env={"PATH": os.environ["PATH"], "DRY_RUN": "1",
                                                     "DATASET": "clotho", "OUT": "/o"},
                          capture_output=True, text=True)
    assert done.returncode != 0 and "DATA_ROOT" in done.stderr
