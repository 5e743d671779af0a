"""Issue 26.1: the README told users `pipeline download esc50 data/` then `pipeline build --root
data/ESC-50-master`, which failed ("esc50 data not found at data/ESC-50-master"): the download
put the dataset in data/ itself. `pipeline download NAME` now defaults DEST to the folder
`pipeline build --dataset NAME` reads without --root (one definition: the dataset's SPEC), and
the README's data commands are run here exactly as written, against a local HTTP server that
serves a zip laid out as the official archive (ESC-50-master/audio/*.wav + meta/esc50.csv)."""
from __future__ import annotations

import functools
import io
import re
import shlex
import threading
import zipfile
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner

from teminal.pipeline.cli import main
from teminal.pipeline.download import MIRROR_ENV

README = Path(__file__).resolve().parents[2] / "README.md"
CLASSES = ("dog", "rain", "siren")
SR = 44100


def readme_data_commands() -> list[str]:
    """The `pipeline ...` lines of README's "Data" code block, comments removed."""
    text = README.read_text(encoding="utf-8")
    section = text.split("### Data: `pipeline`", 1)[1]
    block = section.split("```bash", 1)[1].split("```", 1)[0]
    lines = [re.sub(r"\s+#.*$", "", line).strip() for line in block.splitlines()]
    return [line for line in lines if line.startswith("pipeline ")]


def official_zip() -> bytes:
    """An ESC-50 master zip in miniature: 3 classes x 5 folds x 2 clips of 0.5 s."""
    rows = ["filename,fold,target,category,esc10,src_file,take"]
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for target, category in enumerate(CLASSES):
            for fold in range(1, 6):
                for take in "AB":
                    name = f"{fold}-{100 + target}{fold}-{take}-{target}.wav"
                    rows.append(f"{name},{fold},{target},{category},False,{100 + target}{fold},{take}")
                    t = np.arange(SR // 2) / SR
                    tone = 0.3 * np.sin(2 * np.pi * (300 + 400 * target + 20 * fold) * t)
                    wav = io.BytesIO()
                    sf.write(wav, tone, SR, format="WAV", subtype="PCM_16")
                    z.writestr(f"ESC-50-master/audio/{name}", wav.getvalue())
        z.writestr("ESC-50-master/meta/esc50.csv", "\n".join(rows) + "\n")
        z.writestr("ESC-50-master/README.md", "# ESC-50\n")
    return buf.getvalue()


@pytest.fixture()
def mirror(tmp_path):
    """A local HTTP server holding ESC-50-master.zip (the name `pipeline download` fetches)."""
    served = tmp_path / "served"
    served.mkdir()
    (served / "ESC-50-master.zip").write_bytes(official_zip())

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(served)))
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02},
                              daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_readme_lists_the_path_free_download_and_build():
    commands = readme_data_commands()
    assert "pipeline download esc50" in commands
    assert "pipeline build --dataset esc50 --out data/esc50-shards" in commands


@pytest.mark.slow
def test_the_readme_data_commands_run_as_written(mirror, tmp_path, monkeypatch):
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setenv(MIRROR_ENV, mirror)
    for name in ("TEMINAL_DATA", "TEMINAL_OUT"):
        monkeypatch.delenv(name, raising=False)
    runner = CliRunner()
    ran = []
    for command in readme_data_commands():
        args = shlex.split(command)[1:]
        if args[0] == "synth":
            continue  # the synthetic stand-in, not the real-data path under test
        if args[0] == "build":
            args.append("--no-progress")
        result = runner.invoke(main, args)
        assert result.exit_code == 0, f"`{command}` failed:\n{result.output}"
        assert "Traceback" not in result.output
        ran.append(args[0])
    assert ran[:2] == ["download", "build"] and {"info", "query", "render", "verify"} <= set(ran)
    assert (work / "data" / "ESC-50-master" / "meta" / "esc50.csv").is_file()
    assert (work / "data" / "esc50-shards" / "manifests" / "catalog.duckdb").is_file()
    assert (work / "x.wav").is_file()  # the render line's output


def test_a_root_one_level_above_an_esc50_folder_reads_the_dataset_inside(tmp_path):
    from teminal.pipeline.sources import dataset_spec, esc50

    inside = tmp_path / "data" / "ESC-50-master"
    (inside / "meta").mkdir(parents=True)
    (inside / "audio").mkdir()
    (inside / "meta" / "esc50.csv").write_text("filename,fold,target,category\n")
    assert dataset_spec("esc50").root_problem(tmp_path / "data") is None
    assert esc50.resolve_root(tmp_path / "data") == inside


@pytest.mark.parametrize("dataset,inner", [
    ("clotho", "clotho_csv_files/clotho_captions_evaluation.csv"),
    ("audiocaps", "test.csv"),
])
def test_a_root_one_level_above_a_captioned_dataset_is_refused_naming_the_folder(
        tmp_path, dataset, inner):
    from teminal.pipeline.sources import dataset_spec

    folder = tmp_path / "data" / dataset
    (folder / inner).parent.mkdir(parents=True, exist_ok=True)
    (folder / inner).write_text("x\n")
    problem = dataset_spec(dataset).root_problem(tmp_path / "data")
    assert problem and problem.endswith(f"pass --root {folder}")
    result = CliRunner().invoke(main, ["build", "--dataset", dataset, "--root",
                                       str(tmp_path / "data"), "--out", str(tmp_path / "out")])
    assert result.exit_code == 1 and f"pass --root {folder}" in result.output
