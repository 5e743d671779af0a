"""Issue 26, "Docs and CLI" and 26.6: the commands disagreed with each other and with a user.
The build folder was a positional OUT in `info`/`verify`/`catalog` and `--data` everywhere
else; there was no `--version`; `--plots` (zste) and `--plot` (compare); `evaluate` options without help;
the trainers' `--data` looked optional in `--help`; `--max-step` was taken for --max-steps;
`synth` suggested a build at 48 kHz for a model that needs 16 kHz; `evaluate --device cuda`
without a GPU was 47 lines of traceback, and `--device` was cpu even with a GPU; Accelerate's
five INFO lines per checkpoint could not be quieted."""
from __future__ import annotations

import logging
import shlex

import pytest
from click.testing import CliRunner

from teminal.evaluate.cli import main as evaluate
from teminal.pipeline.cli import main as pipeline


@pytest.mark.parametrize("command,name", [(pipeline, "pipeline"), (evaluate, "evaluate")])
def test_pipeline_and_evaluate_print_their_version(command, name):
    from importlib.metadata import version

    result = CliRunner().invoke(command, ["--version"])
    assert result.exit_code == 0 and result.output.strip() == f"{name}, version {version('teminal')}"


def test_every_evaluate_option_has_help_text():
    missing = [f"{name} --{p.name}" for name, cmd in evaluate.commands.items() for p in cmd.params
               if p.param_type_name == "option" and not p.hidden and not p.help]
    assert missing == []


@pytest.mark.parametrize("reader", ["info", "verify"])
def test_info_and_verify_read_the_build_given_as_data_or_as_out(tiny_data, reader, tmp_path):
    runner = CliRunner()
    for args in (["--data", str(tiny_data)], [str(tiny_data)]):
        result = runner.invoke(pipeline, [reader, *args])
        assert result.exit_code == 0, result.output
    both = runner.invoke(pipeline, [reader, str(tmp_path), "--data", str(tiny_data)])
    assert both.exit_code == 2 and "give one" in both.output


def test_pipeline_catalog_takes_the_build_as_data_or_as_out(small_source, tmp_path):
    from build_helpers import quick_build
    from teminal.manifests.vocabulary import catalog_path

    out = tmp_path / "out"
    quick_build(small_source, out)
    runner = CliRunner()
    for args in (["--data", str(out)], [str(out)]):
        catalog_path(out).unlink()
        result = runner.invoke(pipeline, ["catalog", *args])
        assert result.exit_code == 0 and catalog_path(out).is_file(), result.output
    both = runner.invoke(pipeline, ["catalog", str(out), "--data", str(out)])
    assert both.exit_code == 2 and "give one build folder" in both.output


@pytest.mark.parametrize("command,args,given", [
    (pipeline, ["build", "--ou", "X"], "--ou"),
    (pipeline, ["query", "SELECT 1", "--dat", "X"], "--dat"),
    (evaluate, ["zste", "--mod", "small"], "--mod"),
])
def test_click_commands_never_take_a_prefix_of_an_option(command, args, given):
    result = CliRunner().invoke(command, args)
    assert result.exit_code == 2 and f"No such option '{given}'" in result.output


def test_the_trainers_take_no_prefix_and_show_data_and_out_as_required(capsys):
    from teminal.train.run_config import build_parser

    parser = build_parser("stage_b")
    with pytest.raises(SystemExit) as stop:
        parser.parse_args(["--data", "D", "--out", "R", "--max-step", "3"])
    assert stop.value.code == 2 and "unrecognized arguments: --max-step" in capsys.readouterr().err
    usage = parser.format_usage()
    assert "train/stage_b.py --data OUT --out RUN_DIR [" in usage
    assert "(required)" in parser.format_help().split("--data DATA", 1)[1].split("--out", 1)[0]


def test_synth_suggests_a_build_at_the_small_models_rate(tmp_path):
    result = CliRunner().invoke(pipeline, ["synth", "esc50", str(tmp_path / "s"),
                                           "--clips-per-class-per-fold", "1"])
    assert result.exit_code == 0, result.output
    line = result.output.strip().splitlines()[-1]
    assert line.startswith("next: pipeline build ")
    args = shlex.split(line.removeprefix("next: pipeline "))
    params = pipeline.commands["build"].make_context("build", args[1:]).params
    assert params["sample_rate"] == 16000 and params["root"] == tmp_path / "s"
    assert params["out"] == tmp_path / "s-shards"   # no placeholder: it runs as printed


@pytest.mark.parametrize("present,device", [
    ({"cuda": True, "mps": True}, "cuda"), ({"cuda": False, "mps": True}, "mps"),
    ({"cuda": False, "mps": False}, "cpu")])
def test_the_evaluation_device_defaults_to_the_accelerator_there_is(monkeypatch, present, device):
    import torch

    from teminal.evaluate.cli import _device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: present["cuda"])
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: present["mps"])
    assert _device(None) == device


def test_device_cuda_without_a_gpu_is_one_line_before_any_model_loads(monkeypatch, tmp_path):
    import torch

    from teminal.evaluate import cli

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(cli, "_load_model", lambda *a: pytest.fail("the model was loaded"))
    result = CliRunner().invoke(evaluate, ["zste", "--model", "small", "--data", str(tmp_path),
                                           "--out", str(tmp_path / "z.json"), "--device", "cuda"])
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        "Error: --device cuda: no cuda device is usable here (torch: torch.cuda.is_available() "
        "is False); use --device cpu, or leave --device out to use the accelerator there is"]


@pytest.mark.parametrize("level,teminal_shown,accelerate_shown", [
    ("info", logging.INFO, logging.WARNING), ("warning", logging.WARNING, logging.WARNING),
    ("debug", logging.DEBUG, logging.DEBUG)])
def test_one_log_level_sets_the_console_and_quiets_accelerates_checkpoint_lines(
        level, teminal_shown, accelerate_shown):
    from teminal.train.run_config import build_parser
    from teminal.train.trainer import set_log_level

    assert build_parser("stage_a").parse_args(["-v", level]).log_level == level
    root = logging.getLogger()
    console = logging.StreamHandler()
    root.addHandler(console)
    try:
        set_log_level(level)
        assert console.level == teminal_shown
        assert logging.getLogger("accelerate").level == accelerate_shown
    finally:
        root.removeHandler(console)
        logging.getLogger("accelerate").setLevel(logging.NOTSET)
