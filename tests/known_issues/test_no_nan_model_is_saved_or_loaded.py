"""Issue 23.7: `--lr inf --max-steps 1` exited 0 with a final/ full of NaN; a longer run stopped
but named an all-NaN checkpoint "the last good"; `evaluate` scored an all-NaN checkpoint. The
trainer now checks the trainable weights at every log line, before every checkpoint and before
the export (exit code 3, nothing of that step saved, the named last good checkpoint really
finite); `load_model` refuses weights holding NaN or inf, naming the file and the tensor; the
numeric settings are validated (test_training_settings_are_validated_before_any_work.py)."""
from __future__ import annotations

import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from teminal.models import ModelSpecError, load_model
from teminal.testing import toy_factory
from teminal.train.run_config import TrainConfig
from teminal.train.run_state import last_good_checkpoint
from teminal.train.streaming import canonical_caption
from teminal.train.trainer import NonFiniteWeights, Stage, complete_checkpoints, run
from toy_clap import reference_info_nce


class NanGradient(torch.autograd.Function):
    """The loss as it is, with a NaN gradient: the update makes the weights NaN while the loss
    of that step still reads finite (what a huge learning rate does)."""

    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        return grad * float("nan")


class Diverges:
    def __init__(self, at_call: int):
        self.calls, self.at = 0, at_call

    def __call__(self, audio, text, scale, n_groups, cfg, positives=None):
        self.calls += 1
        loss = reference_info_nce(audio, text, scale)
        return NanGradient.apply(loss) if self.calls == self.at else loss


def stage(loss) -> Stage:
    return Stage("toy_b", "b", ("forward", "reversed", "overlay"), loss, canonical_caption)


def config(data, out, **kw) -> TrainConfig:
    base = dict(data=str(data), out=str(out), max_steps=6, groups_per_batch=2, num_workers=0,
                save_every=2, log_every=100, tensorboard=False, progress=False, seed=1)
    return TrainConfig(**{**base, **kw})


def _all_finite(path) -> bool:
    return all(torch.isfinite(v).all() for v in load_file(str(path)).values())


@pytest.mark.parametrize("at,saved", [
    (6, ["step-2", "step-4"]),   # the last step: the export would be NaN
    (4, ["step-2"]),             # a checkpoint step: it would be saved NaN
    (1, []),                     # the first step: nothing good exists yet
])
def test_weights_that_turn_nan_are_never_saved_or_exported(tiny_data, tmp_path, at, saved):
    out = tmp_path / "run"
    with pytest.raises(NonFiniteWeights, match=rf"NaN or inf after step {at} \(first: "):
        run(config(tiny_data, out), stage(Diverges(at)), toy_factory)
    assert [p.name for p in complete_checkpoints(out)] == saved
    assert all(_all_finite(p / "model.safetensors") for p in complete_checkpoints(out))
    assert not (out / "final").exists()


def test_the_message_names_a_last_good_checkpoint_that_is_finite(tiny_data, tmp_path):
    out = tmp_path / "run"
    run(config(tiny_data, out, max_steps=4, keep_checkpoints=5), stage(Diverges(0)), toy_factory)
    newest = complete_checkpoints(out)[-1]  # poisoned, as an earlier version could have saved
    weights = load_file(str(newest / "model.safetensors"))
    save_file({k: v * float("nan") for k, v in weights.items()}, str(newest / "model.safetensors"))
    assert last_good_checkpoint(out).name == "step-2"


def test_the_exit_code_of_a_diverged_run_is_3_with_one_line(tiny_data, tmp_path, capsys,
                                                            monkeypatch):
    from teminal.train import trainer

    monkeypatch.setattr(trainer, "_load_model", toy_factory)
    (tmp_path / "empty.yaml").write_text("{}\n")
    argv = ["--config", str(tmp_path / "empty.yaml"), "--data", str(tiny_data), "--out", str(tmp_path / "run"), "--max-steps", "1",
            "--num-workers", "0", "--no-tensorboard", "--no-progress", "--groups-per-batch", "2"]
    assert trainer.main_for(stage(Diverges(1)), argv) == 3
    err = capsys.readouterr().err
    assert "NaN or inf after step 1" in err and "Traceback" not in err


# load_model refuses non-finite weights (every family goes through it: evaluate, --init, --model)

@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_an_hf_folder_with_non_finite_weights_is_refused_naming_file_and_tensor(
        tiny_hf_dir, tmp_path, value):
    folder = shutil.copytree(tiny_hf_dir, tmp_path / "hf")
    weights = load_file(str(folder / "model.safetensors"))
    name = sorted(k for k in weights if k.endswith("weight"))[3]
    weights[name] = weights[name].clone()
    weights[name].view(-1)[1] = value
    save_file(weights, str(folder / "model.safetensors"))
    with pytest.raises(ModelSpecError, match=rf"{folder}/model.safetensors: weight \S*{name} holds"
                                             rf" NaN or inf"):
        load_model(f"hf:{folder}")


def test_an_msclap_file_with_nan_weights_is_refused(tiny_msclap, tmp_path):
    weights, tok = tiny_msclap("2023")
    state = torch.load(weights, weights_only=True)
    key = next(k for k, v in state["model"].items() if v.is_floating_point() and v.numel() > 1)
    state["model"][key] = torch.full_like(state["model"][key], float("nan"))
    bad = tmp_path / "nan.pth"
    torch.save(state, bad)
    with pytest.raises(ModelSpecError, match=rf"{bad}: weight {key} holds NaN"):
        load_model(f"msclap:{bad}?version=2023&text={tok}")


def test_evaluate_refuses_a_nan_checkpoint_in_one_line(tiny_hf_dir, tmp_path):
    from click.testing import CliRunner

    from teminal.evaluate.cli import main

    folder = shutil.copytree(tiny_hf_dir, tmp_path / "hf")
    weights = load_file(str(folder / "model.safetensors"))
    save_file({k: v * float("nan") if v.is_floating_point() else v for k, v in weights.items()},
              str(folder / "model.safetensors"))
    result = CliRunner().invoke(main, ["zste", "--model", f"hf:{folder}", "--data",
                                       str(tmp_path), "--out", str(tmp_path / "r.json")])
    assert result.exit_code == 1 and "holds NaN or inf" in result.output
    assert "Traceback" not in result.output
