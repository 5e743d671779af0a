"""Issue 23.10 (Ray part): `--executor ray` without Ray importable died with ImportError after
claiming OUT (so the corrected build was refused as "another build"), and an unreachable
`--ray-address` hung for minutes (ray.init retries and cannot be interrupted). Both are now
checked before OUT is touched (`executors.check_executor`): Ray must import, and the address
must answer a TCP connection within RAY_CONNECT_TIMEOUT_S and be joinable by a child process
within RAY_INIT_TIMEOUT_S; each failure is one line naming the fix."""
from __future__ import annotations

import socket
import sys
import threading
import time

import pytest
from click.testing import CliRunner

from teminal.pipeline import executors
from teminal.pipeline.cli import main


def build(source, out, *args):
    return CliRunner().invoke(main, ["build", "--root", str(source), "--out", str(out),
                                     "--no-progress", "--executor", "ray", *args])


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("ray_address", [None, "127.0.0.1:6379"])
def test_ray_not_importable_fails_before_claiming_out(small_source, tmp_path, monkeypatch,
                                                      ray_address):
    monkeypatch.setitem(sys.modules, "ray", None)        # `import ray` raises ImportError
    out = tmp_path / "out"
    args = ["--ray-address", ray_address] if ray_address else []
    result = build(small_source, out, *args)
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    assert "needs Ray" in result.output and "pip install ray" in result.output
    assert "make install" in result.output and not out.exists()


@pytest.mark.parametrize("address", ["127.0.0.1:{port}", "ray://127.0.0.1:{port}",
                                     "[::1]:{port}", "no-such-host.invalid:6379"])
def test_an_address_where_nothing_answers_fails_fast_before_claiming_out(small_source,
                                                                         tmp_path, address):
    pytest.importorskip("ray")
    address = address.format(port=closed_port())
    out = tmp_path / "out"
    t0 = time.monotonic()
    result = build(small_source, out, "--ray-address", address)
    assert time.monotonic() - t0 < executors.RAY_CONNECT_TIMEOUT_S + 5
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    assert f"--ray-address {address}: no Ray cluster answers" in result.output
    assert "ray start --head" in result.output and not out.exists()


def test_an_address_that_answers_but_is_no_ray_cluster_fails_in_bounded_time(small_source,
                                                                             tmp_path,
                                                                             monkeypatch):
    pytest.importorskip("ray")
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    held = []
    threading.Thread(target=lambda: held.extend(server.accept() for _ in range(8)),
                     daemon=True).start()           # accepts, never speaks
    monkeypatch.setattr(executors, "RAY_INIT_TIMEOUT_S", 3.0)
    out = tmp_path / "out"
    t0 = time.monotonic()
    try:
        result = build(small_source, out, "--ray-address",
                       f"127.0.0.1:{server.getsockname()[1]}")
    finally:
        server.close()
    assert time.monotonic() - t0 < 3.0 + 5
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    assert ("did not finish within 3 s" in result.output
            or "cannot join the Ray cluster" in result.output), result.output
    assert not out.exists()


def test_the_local_executor_needs_no_ray(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)
    executors.check_executor("local", None)
