"""Issue 23.7 (settings): `--lr inf --max-steps 1` exited 0 with a final/ full of NaN; huge
learning rates gave 1e30 weights silently. Every numeric training setting is now checked like
the build's options, before any work: finite, in range, a whole number where it counts
something; one message names every bad setting and its flag (exit code 2)."""
from __future__ import annotations

import pytest

from teminal.train.run_config import TrainConfig


@pytest.mark.parametrize("flag,value", [
    ("--lr", "inf"), ("--lr", "nan"), ("--lr", "-1e-3"), ("--lr", "0"), ("--lr", "1e30"),
    ("--grad-clip", "-1"), ("--grad-clip", "inf"),
    ("--alpha-same-time", "nan"), ("--alpha-cross-overlap", "-2"), ("--beta", "-1"),
    ("--beta", "1e9"), ("--lambda-a", "inf"), ("--retain-singles", "nan"),
    ("--warmup-steps", "-5"), ("--weight-decay", "1e9"), ("--weight-decay", "-0.1"),
    ("--lr-gamma", "0"), ("--lr-gamma", "nan"), ("--logit-scale-lr-mult", "1e30"),
    ("--epochs", "0"), ("--epochs", "inf"), ("--seed", "-1"), ("--grad-accum", "0"),
    ("--average-every", "0"), ("--keep-checkpoints", "0"), ("--prefetch", "0"),
    ("--shuffle-buffer", "-1"), ("--max-steps", "-3"),
])
def test_a_bad_numeric_setting_is_refused_naming_its_flag_before_any_work(tiny_data, tmp_path,
                                                                         capsys, flag, value):
    from teminal.train import stage_b

    out = tmp_path / "run"
    argv = ["--data", str(tiny_data), "--out", str(out), "--num-workers", "0",
            "--no-tensorboard", "--no-progress", f"{flag}={value}"]
    assert stage_b.main(argv) == 2
    err = capsys.readouterr().err
    assert f"({flag}) must be" in err and "Traceback" not in err, err
    assert not out.exists()


def test_every_bad_setting_is_named_in_one_message(tmp_path):
    with pytest.raises(ValueError) as e:
        TrainConfig(data="d", out="o", lr=float("inf"), beta=float("nan"), grad_clip=-1.0,
                    warmup_steps=-1).validate()
    text = str(e.value)
    assert all(f"({flag}) must be" in text
               for flag in ("--lr", "--beta", "--grad-clip", "--warmup-steps"))


@pytest.mark.parametrize("rule", ["text_branch.*=1e30", "text_branch.*=inf", "x=nan"])
def test_a_learning_rate_multiple_out_of_range_is_refused(tmp_path, rule):
    with pytest.raises(ValueError, match=r"--lr-mult: .*FACTOR >= 0 and <= 1000"):
        TrainConfig(data="d", out="o", lr_mult=[rule]).validate()


def test_a_yaml_number_read_as_text_is_explained(tmp_path):
    with pytest.raises(ValueError, match=r"lr \(--lr\) must be .*got '1e-3' \(YAML reads 1e-3 "
                                         r"as text: write 1.0e-3\)"):
        TrainConfig(data="d", out="o", lr="1e-3").validate()


def test_the_shipped_configs_are_valid():
    from teminal.train.run_config import CONFIG_DIR, load_yaml

    for path in sorted(CONFIG_DIR.glob("*.yaml")):
        TrainConfig.from_dict({**load_yaml(path), "data": "d", "out": "o"}, str(path)).validate()


def test_every_numeric_setting_has_a_range():
    """A numeric setting added later must say its range in run_config.BOUNDS."""
    import dataclasses
    import typing

    from teminal.train.run_config import bounds

    hints = typing.get_type_hints(TrainConfig)
    numeric = {f.name for f in dataclasses.fields(TrainConfig)
               if {int, float} & set(typing.get_args(hints[f.name]) or (hints[f.name],))}
    assert numeric - set(bounds()) == set()


@pytest.mark.parametrize("value", [10**400, -(10**400), float("1e308") * 10])
def test_numbers_beyond_floats_are_refused_not_a_traceback(value):
    with pytest.raises(ValueError, match=r"seed \(--seed\) must be"):
        TrainConfig(data="d", out="o", seed=value).validate()
