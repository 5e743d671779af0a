"""Issue 26.6: Ctrl-C during training printed two tracebacks (about 90 lines) and no word about
--resume. A stage script now prints one line naming the last complete checkpoint and the exact
command that resumes from it (exit status 130), and that command continues the run."""
from __future__ import annotations

import shlex

import pytest

from teminal.testing import toy_factory
from teminal.train import trainer
from teminal.train.streaming import canonical_caption
from teminal.train.trainer import Stage, complete_checkpoints
from toy_clap import reference_info_nce


class Interrupted:
    """The toy loss, with a Ctrl-C (KeyboardInterrupt) at call `at` (None: never)."""

    def __init__(self, at: int | None):
        self.calls, self.at = 0, at

    def __call__(self, audio, text, scale, n_groups, cfg, positives=None):
        self.calls += 1
        if self.calls == self.at:
            raise KeyboardInterrupt
        return reference_info_nce(audio, text, scale)


def stage(at: int | None) -> Stage:
    return Stage("toy_b", "b", ("forward", "reversed", "overlay"), Interrupted(at),
                 canonical_caption)


@pytest.fixture()
def argv(tiny_data, tmp_path):
    (tmp_path / "empty.yaml").write_text("{}\n")
    return ["--config", str(tmp_path / "empty.yaml"), "--data", str(tiny_data), "--out",
            str(tmp_path / "run"), "--max-steps", "6", "--save-every", "2", "--num-workers", "0",
            "--no-tensorboard", "--no-progress", "--groups-per-batch", "2", "--where",
            "relation = 'forward' OR true"]


def test_ctrl_c_prints_one_line_naming_the_checkpoint_and_the_resume_command(argv, tmp_path,
                                                                             capsys):
    assert trainer.main_for(stage(at=5), argv, model_factory=toy_factory) == 130
    err = capsys.readouterr().err
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert [ln for ln in err.splitlines() if "interrupted" in ln] == [last]
    assert f"the last complete checkpoint is {tmp_path / 'run' / 'checkpoints' / 'step-4'}" in last
    command = shlex.split(last.split("resume with: ", 1)[1])
    assert command[:2] == ["python", "train/toy_b.py"] and command[-1] == "--resume"
    assert command[2:-1] == argv   # quoted so that the shell gives back every argument

    # the printed command continues the run from step 4 to its end
    assert trainer.main_for(stage(at=None), command[2:], model_factory=toy_factory) == 0
    assert (tmp_path / "run" / "final" / "model.safetensors").is_file()
    assert complete_checkpoints(tmp_path / "run")[-1].name == "step-6"
    assert "steps 4->6" in capsys.readouterr().out


def test_ctrl_c_before_the_first_checkpoint_says_the_run_restarts(argv, capsys):
    assert trainer.main_for(stage(at=1), argv, model_factory=toy_factory) == 130
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert "no checkpoint was complete yet (the run restarts at step 0)" in last
    assert last.endswith("--resume")


def test_under_accelerate_launch_the_command_is_the_launchers(monkeypatch):
    for name, value in {"ACCELERATE_DYNAMO_BACKEND": "NO", "WORLD_SIZE": "2",
                        "ACCELERATE_MIXED_PRECISION": "bf16"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr("sys.argv", ["train/stage_b.py", "--data", "D", "--out", "R"])
    assert trainer.resume_command(stage(None)) == (
        "accelerate launch -q --multi_gpu --num_processes 2 --mixed_precision bf16 "
        "train/stage_b.py --data D --out R --resume")
