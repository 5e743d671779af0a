"""`pipeline download` against a Range-capable HTTP server on 127.0.0.1 (never the internet)."""
from __future__ import annotations

import csv
import hashlib
import io
import json
import re
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner

from teminal.pipeline import download as dl


class FileServer:
    """Serves `files` ({url path: bytes}) with single-range support. A path in `cut_once` has
    its next answer cut half-way (the connection closes); `ignore_range` answers 200 to ranges."""

    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.cut_once: set[str] = set()
        self.ignore_range = False
        self.requests: list[tuple[str, str | None]] = []
        state = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server's naming)
                path = urlparse(self.path).path
                state.requests.append((path, self.headers.get("Range")))
                data = state.files.get(path)
                if data is None:
                    self.send_error(404)
                    return
                start, want = 0, self.headers.get("Range")
                if want and not state.ignore_range:
                    start = int(re.fullmatch(r"bytes=(\d+)-", want)[1])
                    if start >= len(data):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(data)}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                body = data[start:]
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if path in state.cut_once:
                    state.cut_once.discard(path)
                    body = body[: len(body) // 2]
                    self.close_connection = True
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02},
                                       daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return self.base + path

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    s = FileServer()
    yield s
    s.close()


def quiet(**kw):
    return dict(progress=False, backoff=0.0, echo=lambda msg: None, **kw)


def wav_bytes(seconds: float = 0.2, sr: int = 16000) -> bytes:
    buf = io.BytesIO()
    t = np.arange(int(sr * seconds)) / sr
    sf.write(buf, 0.3 * np.sin(2 * np.pi * 500 * t), sr, format="WAV")
    return buf.getvalue()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# ---------------------------------------------------------------------------------------------
# Transfer

def test_resume_after_the_server_closes_mid_file(server, tmp_path):
    data = bytes(range(256)) * 4000
    server.files["/big.bin"] = data
    server.cut_once.add("/big.bin")
    out = dl.fetch(server.url("/big.bin"), tmp_path / "big.bin", retries=2, backoff=0, progress=False,
                   echo=lambda m: None)
    assert out.read_bytes() == data
    assert not (tmp_path / "big.bin.part").exists()
    assert server.requests == [("/big.bin", None), ("/big.bin", f"bytes={len(data) // 2}-")]


def test_resume_across_runs_from_the_part_file(server, tmp_path):
    data = b"0123456789" * 50000
    server.files["/f.bin"] = data
    server.cut_once.add("/f.bin")
    with pytest.raises(dl.DownloadError, match="run the command again to resume"):
        dl.fetch(server.url("/f.bin"), tmp_path / "f.bin", retries=0, progress=False)
    part = tmp_path / "f.bin.part"
    assert part.stat().st_size == len(data) // 2
    dl.fetch(server.url("/f.bin"), tmp_path / "f.bin", retries=0, progress=False)
    assert (tmp_path / "f.bin").read_bytes() == data
    assert server.requests[-1] == ("/f.bin", f"bytes={len(data) // 2}-")


def test_server_ignoring_range_restarts_cleanly(server, tmp_path):
    data = b"abcdef" * 10000
    server.files["/f.bin"] = data
    server.ignore_range = True
    (tmp_path / "f.bin.part").write_bytes(b"stale bytes that must not survive")
    dl.fetch(server.url("/f.bin"), tmp_path / "f.bin", retries=0, progress=False)
    assert (tmp_path / "f.bin").read_bytes() == data


def test_complete_part_is_finished_on_416(server, tmp_path):
    data = b"x" * 1000
    server.files["/f.bin"] = data
    (tmp_path / "f.bin.part").write_bytes(data)
    dl.fetch(server.url("/f.bin"), tmp_path / "f.bin", retries=0, progress=False)
    assert (tmp_path / "f.bin").read_bytes() == data


def test_not_found_fails_at_once(server, tmp_path):
    with pytest.raises(dl.DownloadError, match="HTTP 404"):
        dl.fetch(server.url("/nothing"), tmp_path / "x", retries=3, backoff=0, progress=False)
    assert len(server.requests) == 1


# ---------------------------------------------------------------------------------------------
# Datasets

AUDIOCAPS_CSV = ("audiocap_id,youtube_id,start_time,caption\r\n"
                 '1,-abc,30,"A dog barks, twice"\r\n2,def,0,Rain falls\r\n')


def serve_audiocaps(server) -> dict[str, bytes]:
    files = {f"{s}.csv": AUDIOCAPS_CSV.encode() for s in ("train", "val", "test")}
    for name, data in files.items():
        server.files[f"/ac/{name}"] = data
    return files


def test_audiocaps_captions_download_record_and_skip(server, tmp_path):
    files = serve_audiocaps(server)
    messages = []
    root = dl.download("audiocaps-captions", tmp_path, url=server.url("/ac/"), **{
        **quiet(), "echo": messages.append})
    assert root == tmp_path
    assert sorted(p.name for p in tmp_path.glob("*.csv")) == ["test.csv", "train.csv", "val.csv"]
    # no published checksum: the computed one is printed and recorded
    digest = sha256(files["train.csv"])
    assert any(digest in m and "--sha256 train.csv=" in m for m in messages)
    assert json.loads((tmp_path / ".downloads" / "train.csv.json").read_text())["sha256"] == digest

    from teminal.pipeline.sources import audiocaps
    scan = audiocaps.scan(root, progress=False)
    assert [r.reason for r in scan.rejects] == ["missing audio"] * 6

    n = len(server.requests)
    dl.download("audiocaps-captions", tmp_path, url=server.url("/ac/"), **quiet())
    assert len(server.requests) == n  # idempotent: nothing fetched again


def test_checksum_mismatch_deletes_and_explains(server, tmp_path):
    serve_audiocaps(server)
    with pytest.raises(dl.ChecksumError) as e:
        dl.download("audiocaps-captions", tmp_path, url=server.url("/ac"),
                    sha256={"val.csv": "0" * 64}, **quiet())
    msg = str(e.value)
    assert "val.csv" in msg and "0" * 64 in msg and "--sha256" in msg
    assert not (tmp_path / "val.csv").exists()
    assert (tmp_path / "train.csv").exists()  # files before it are kept


def test_known_clotho_md5_rejects_other_bytes(server, tmp_path):
    server.files["/clotho/clotho_captions_development.csv"] = (
        b"file_name,caption_1,caption_2,caption_3,caption_4,caption_5\r\nx.wav,a,b,c,d,e\r\n")
    with pytest.raises(dl.ChecksumError, match="md5 .* d4090b39ce9f2491908eebf4d5b09bae"):
        dl.download("clotho", tmp_path, url=server.url("/clotho"), **quiet())


def test_html_error_page_is_not_taken_for_a_csv(server, tmp_path):
    for s in ("train", "val", "test"):
        server.files[f"/ac/{s}.csv"] = b"<!DOCTYPE html><html>rate limited</html>"
    with pytest.raises(dl.DownloadError, match="expected CSV header"):
        dl.download("audiocaps-captions", tmp_path, url=server.url("/ac"), **quiet())
    assert not (tmp_path / "train.csv").exists()


def make_zip(entries: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, data in entries.items():
            z.writestr(name, data)
    return buf.getvalue()


def test_esc50_zip_extracts_into_reader_layout(server, tmp_path):
    meta = ("filename,fold,target,category,esc10,src_file,take\n"
            "1-100032-A-0.wav,1,0,dog,True,100032,A\n5-9032-A-0.wav,5,0,dog,True,9032,A\n")
    archive = make_zip({"ESC-50-master/meta/esc50.csv": meta.encode(),
                        "ESC-50-master/audio/1-100032-A-0.wav": wav_bytes(),
                        "ESC-50-master/audio/5-9032-A-0.wav": wav_bytes(),
                        "ESC-50-master/README.md": b"# ESC-50\n"})
    server.files["/master.zip"] = archive
    server.cut_once.add("/master.zip")
    root = dl.download("esc50", tmp_path, url=server.url("/master.zip"), sha256=sha256(archive),
                       **quiet())
    assert root == tmp_path
    assert (tmp_path / "meta" / "esc50.csv").read_text() == meta
    assert sorted(p.name for p in (tmp_path / "audio").iterdir()) == ["1-100032-A-0.wav", "5-9032-A-0.wav"]
    assert not (tmp_path / ".downloads" / "ESC-50-master.zip").exists()  # archive removed
    assert not list((tmp_path / ".downloads").glob("*.extract"))
    from teminal.pipeline.sources import esc50
    assert len(esc50.scan(root).clips) == 2

    n = len(server.requests)
    dl.download("esc50", tmp_path, url=server.url("/master.zip"), sha256=sha256(archive), **quiet())
    assert len(server.requests) == n


@pytest.mark.parametrize("member", ["../evil.txt", "/abs/evil.txt", "C:/evil.txt", "a/../../evil.txt"])
def test_zip_with_paths_outside_the_folder_is_refused(server, tmp_path, member):
    server.files["/evil.zip"] = make_zip({member: b"x"})
    with pytest.raises(dl.DownloadError, match="outside the folder"):
        dl.download("esc50", tmp_path / "d", url=server.url("/evil.zip"), **quiet())
    assert not (tmp_path / "evil.txt").exists()


def test_clotho_7z_archives_extract_into_reader_layout(server, tmp_path):
    py7zr = pytest.importorskip("py7zr", reason="py7zr builds the test's .7z archives")
    from teminal.pipeline.sources import clotho

    # (py7zr's writer drops a leading "X:" from a top-level name as a drive, so the colon name
    # sits inside a split folder, as in the real archives)
    names = {"development": ["dev one.wav"], "validation": ["val.dots.v2.wav"],
             "evaluation": ["Flipping Pages.wav", "Kitchen: 12:30 café.wav"]}
    pins = {}
    for split, files in names.items():
        caps = io.StringIO()
        w = csv.writer(caps)
        w.writerow(dl_header())
        for n in files:
            w.writerow([n, "a, b", "c", "d", "e", "f"])
        for kind, data in (("captions", caps.getvalue().encode("utf-8")),
                           ("metadata", b"file_name,keywords,sound_id,sound_link\n")):
            name = f"clotho_{kind}_{split}.csv"
            server.files[f"/z/{name}"] = data
            pins[name] = sha256(data)
        src = tmp_path / "src" / split
        src.mkdir(parents=True)
        for n in files:
            (src / n).write_bytes(wav_bytes())
        archive = tmp_path / "src" / f"clotho_audio_{split}.7z"
        with py7zr.SevenZipFile(archive, "w") as z:
            if split == "validation":  # files at the top level, no split folder
                for n in files:
                    z.write(src / n, arcname=n)
            else:
                z.writeall(src, arcname=split)
        server.files[f"/z/{archive.name}"] = archive.read_bytes()
        pins[archive.name] = sha256(archive.read_bytes())
    server.cut_once.add("/z/clotho_audio_development.7z")

    dest = tmp_path / "clotho"
    root = dl.download("clotho", dest, url=server.url("/z"), sha256=pins, **quiet())
    for split, files in names.items():
        assert sorted(p.name for p in (dest / "clotho_audio_files" / split).iterdir()) == sorted(files)
    assert (dest / "clotho_csv_files" / "clotho_captions_validation.csv").is_file()
    assert not list((dest / ".downloads").glob("*.7z"))
    scan = clotho.scan(root, progress=False)
    assert scan.rejects == []
    assert sorted((c.split, Path(c.path).name) for c in scan.clips) == [
        ("test", "Flipping Pages.wav"), ("test", "Kitchen: 12:30 café.wav"),
        ("train", "dev one.wav"), ("val", "val.dots.v2.wav")]

    # idempotent, and a removed folder is the only thing fetched again
    import shutil
    shutil.rmtree(dest / "clotho_audio_files" / "validation")
    n = len(server.requests)
    dl.download("clotho", dest, url=server.url("/z"), sha256=pins, **quiet())
    assert [p for p, _ in server.requests[n:]] == ["/z/clotho_audio_validation.7z"]
    assert (dest / "clotho_audio_files" / "validation" / "val.dots.v2.wav").is_file()


def dl_header():
    return ["file_name", "caption_1", "caption_2", "caption_3", "caption_4", "caption_5"]


def test_7z_without_py7zr_or_program_explains_install(tmp_path, monkeypatch):
    import builtins
    import shutil

    real_import = builtins.__import__

    def no_py7zr(name, *a, **k):
        if name == "py7zr":
            raise ImportError(name)
        return real_import(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_py7zr)
    monkeypatch.setattr(shutil, "which", lambda name: None)
    (tmp_path / "a.7z").write_bytes(b"7z\xbc\xaf\x27\x1c")
    with pytest.raises(dl.DownloadError, match="pip install py7zr"):
        dl.extract(tmp_path / "a.7z", "7z", tmp_path / "out", scratch=tmp_path / "scratch")


# ---------------------------------------------------------------------------------------------
# CLI

def test_cli_audiocaps_explains_how_to_get_audio(tmp_path):
    result = CliRunner().invoke(dl.download_command, ["audiocaps", str(tmp_path)])
    assert result.exit_code == 0
    out = result.output
    assert "cannot be downloaded in bulk" in out
    assert "{youtube_id}_{start_time}.{ext}" in out and "Y{youtube_id}.{ext}" in out
    assert f"{tmp_path}/audio/<split>/" in out and "missing audio" in out
    assert not list(tmp_path.iterdir())  # nothing written


def test_cli_download_and_checksum_error(server, tmp_path):
    serve_audiocaps(server)
    runner = CliRunner()
    ok = runner.invoke(dl.download_command, ["audiocaps-captions", str(tmp_path / "a"), "--url",
                                             server.url("/ac")])
    assert ok.exit_code == 0, ok.output
    assert (tmp_path / "a" / "test.csv").is_file()
    bad = runner.invoke(dl.download_command, ["audiocaps-captions", str(tmp_path / "b"), "--url",
                                              server.url("/ac"), "--sha256", f"train.csv={'f' * 64}"])
    assert bad.exit_code == 1 and "does not match" in bad.output
    one = runner.invoke(dl.download_command, ["audiocaps-captions", str(tmp_path / "c"), "--sha256",
                                              "f" * 64])
    assert one.exit_code == 1 and "FILE=HEX" in one.output


def test_cli_without_dest_fills_the_folder_the_build_reads_by_default(server, tmp_path,
                                                                    monkeypatch):
    """DEST is optional (issue 26.1): it defaults to the dataset's SPEC.default_root(), and
    $TEMINAL_DOWNLOAD_MIRROR replaces every source."""
    serve_audiocaps(server)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("TEMINAL_DATA", raising=False)
    monkeypatch.setenv(dl.MIRROR_ENV, server.url("/ac"))
    ok = CliRunner().invoke(dl.download_command, ["audiocaps-captions"])
    assert ok.exit_code == 0, ok.output
    assert sorted(p.name for p in (tmp_path / "data" / "audiocaps").glob("*.csv")) == [
        "test.csv", "train.csv", "val.csv"]
    assert "next: pipeline build --dataset audiocaps --out OUT" in ok.output
    assert [p for p, _ in server.requests] == ["/ac/train.csv", "/ac/val.csv", "/ac/test.csv"]

    monkeypatch.setenv("TEMINAL_DATA", str(tmp_path / "elsewhere"))
    assert dl.default_dest("clotho") == tmp_path / "elsewhere" / "clotho"
    assert dl.default_dest("audiocaps") == dl.default_dest("audiocaps-captions")
    for name in dl.NAMES:
        assert dl.default_dest(name) == dl.dataset_of(name).default_root()
