"""The `pipeline` command line: help texts, synth -> build -> info/query/render/catalog."""
from __future__ import annotations

import pytest
from click.testing import CliRunner

from teminal.pipeline.cli import format_table, main

COMMANDS = ["synth", "build", "catalog", "query", "info", "render"]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """`pipeline synth` then `pipeline build` through the CLI, tiny and at 16 kHz."""
    tmp = tmp_path_factory.mktemp("cli")
    runner = CliRunner()
    synth = runner.invoke(main, ["synth", "esc50", str(tmp / "synth"), "--clips-per-class-per-fold", "1"])
    assert synth.exit_code == 0, synth.output
    assert "SYNTHETIC" in synth.output
    args = ["build", "--root", str(tmp / "synth"), "--out", str(tmp / "out"), "--stages", "b",
            "--groups", "train=6,val=2,test=2", "--sample-rate", "16000", "--clip-seconds", "2",
            "--shard-size", "4", "--template-set", "extended", "--no-progress"]
    result = runner.invoke(main, args)
    assert result.exit_code == 0, result.output
    return tmp / "out", result


def test_help_texts():
    runner = CliRunner()
    top = runner.invoke(main, ["--help"])
    assert top.exit_code == 0
    assert all(c in top.output for c in COMMANDS)
    for command in COMMANDS:
        result = runner.invoke(main, [command, "--help"])
        assert result.exit_code == 0 and "Usage" in result.output, command
    assert "--part" in runner.invoke(main, ["build", "--help"]).output


def test_every_build_setting_is_an_option_whose_default_is_the_dataclass_default():
    """`pipeline build`'s options are generated from BuildConfig: a new setting without an
    option fails here, and the options left at their defaults give BuildConfig's defaults."""
    import dataclasses

    from teminal.pipeline.build_options import NOT_OPTIONS, OPTIONS, build_config
    from teminal.pipeline.compose import ComposeConfig
    from teminal.pipeline.config import BuildConfig

    fields = {f.name for f in dataclasses.fields(BuildConfig)} | {
        f"compose.{f.name}" for f in dataclasses.fields(ComposeConfig)}
    assert {o.field for o in OPTIONS} | NOT_OPTIONS == fields
    values = main.commands["build"].make_context("build", ["--out", "OUT"]).params
    values.pop("no_progress")
    assert build_config(values) == BuildConfig(out="OUT")


@pytest.mark.parametrize("option,choices", [
    ("dataset", "DATASETS"), ("codec", "CODECS"), ("executor", "EXECUTORS"),
    ("pad", "PAD_POLICIES"), ("template_set", "LABEL_TEMPLATE_SETS")])
def test_build_choices_come_from_their_registries(option, choices):
    from teminal.pipeline import build_options

    param = next(p for p in main.commands["build"].params if p.name == option)
    assert sorted(param.type.choices) == sorted(getattr(build_options, choices))


def test_build_prints_a_summary_and_flags_synthetic_input(built):
    out, result = built
    assert "SYNTHETIC" in result.output
    assert "groups   10" in result.output and "samples 30" in result.output
    assert (out / "manifests" / "catalog.duckdb").exists()


def test_info_summarises_the_build(built):
    result = CliRunner().invoke(main, ["info", str(built[0])])
    assert result.exit_code == 0, result.output
    assert "SYNTHETIC" in result.output
    for word in ("forward", "reversed", "overlay", "train", "test", "rejects: 0", "MB"):
        assert word in result.output


def test_query_prints_a_table(built):
    result = CliRunner().invoke(main, ["query", "SELECT split, count(*) AS n FROM samples "
                                                "GROUP BY split ORDER BY split", "--data", str(built[0])])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split() == ["split", "n"]
    assert lines[2].split() == ["test", "6"] and lines[4].split() == ["val", "6"]
    assert "(3 rows)" in result.output


def test_query_is_read_only_and_reports_sql_errors(built):
    runner = CliRunner()
    write = runner.invoke(main, ["query", "DELETE FROM samples", "--data", str(built[0])])
    assert write.exit_code != 0 and "read-only" in write.output.lower()
    bad = runner.invoke(main, ["query", "SELECT nope FROM samples", "--data", str(built[0])])
    assert bad.exit_code != 0 and "query failed" in bad.output


def test_render_checks_the_stored_member(built, tmp_path):
    import soundfile as sf

    wav = tmp_path / "x.wav"
    result = CliRunner().invoke(main, ["render", "esc50-b-test-000000.reversed", "--data",
                                       str(built[0]), "--out", str(wav)])
    assert result.exit_code == 0, result.output
    assert "match" in result.output and "MISMATCH" not in result.output
    info = sf.info(wav)
    assert (info.samplerate, info.frames) == (16000, 32000)
    missing = CliRunner().invoke(main, ["render", "esc50-b-test-000000", "--data", str(built[0])])
    assert missing.exit_code != 0 and "esc50-b-test-000000.forward" in missing.output


def test_catalog_command_rewrites_the_same_manifests(built):
    out = built[0]
    before = {p.name: p.read_bytes() for p in (out / "manifests").glob("*.parquet")}
    result = CliRunner().invoke(main, ["catalog", str(out)])
    assert result.exit_code == 0, result.output
    assert before == {p.name: p.read_bytes() for p in (out / "manifests").glob("*.parquet")}


def test_missing_data_gives_a_clear_error(tmp_path):
    runner = CliRunner()
    result = runner.invoke(main, ["build", "--root", str(tmp_path / "none"), "--out", str(tmp_path / "o")])
    assert result.exit_code != 0 and "pipeline synth esc50" in result.output
    result = runner.invoke(main, ["info", str(tmp_path)])
    assert result.exit_code != 0 and "no catalog" in result.output
    result = runner.invoke(main, ["build", "--root", str(tmp_path), "--out", str(tmp_path / "o"),
                                  "--part", "3/2"])
    assert result.exit_code != 0 and "part" in result.output


def test_format_table_aligns_and_truncates():
    text = format_table(["name", "n"], [("a" * 100, 1), (None, 22)], max_width=10)
    lines = text.splitlines()
    assert lines[0].startswith("name") and lines[2].startswith("aaaaaaaaa…")
    assert lines[3].split() == ["NULL", "22"]
