"""Regression: laion_clap's package import pulls tokenizers from a hub (hook.py ->
training/data.py). Importing teminal.models and building + running the small model must open
no socket at all, even a failed one (transformers 5 swallows the failure and returns a broken
tokenizer, so an exception alone would not show it)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent("""
    import json, socket, sys
    attempts = []

    def refuse(name):
        def _refuse(*args, **kwargs):
            attempts.append(f"{name}{args[:2]!r}")
            raise OSError(f"network disabled by the test: {name}")
        return _refuse

    socket.socket.connect = refuse("connect")
    socket.socket.connect_ex = refuse("connect_ex")
    socket.create_connection = refuse("create_connection")
    socket.getaddrinfo = refuse("getaddrinfo")

    import torch
    from teminal.models import load_model
    model = load_model("small")
    with torch.no_grad():
        audio = model.embed_audio(torch.randn(2, 8000), 16000)
        text = model.embed_text(["a dog barks before a siren", "rain"])
    print(json.dumps({
        "attempts": attempts,
        "audio": list(audio.shape), "text": list(text.shape),
        "laion_modules": sorted(m for m in sys.modules if m.startswith("laion_clap")),
    }))
""")


@pytest.mark.slow  # ~10 s: a fresh interpreter imports laion's model code (sklearn, torchvision)
def test_import_and_small_model_open_no_socket():
    # hub access allowed by the environment: the package must not rely on offline flags
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "0",
           "TRANSFORMERS_OFFLINE": "0"}
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                         env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["attempts"] == [], f"sockets were opened: {result['attempts']}"
    assert result["audio"] == [2, 256] and result["text"] == [2, 256]
    # the package __init__ (hook.py, training/data.py) never ran
    assert "laion_clap.hook" not in result["laion_modules"]
    assert not any(m.startswith("laion_clap.training") for m in result["laion_modules"])
    assert "laion_clap.clap_module" in result["laion_modules"]


def test_importing_the_package_does_not_import_laion_clap():
    code = "import sys, teminal.models; print(any(m.startswith('laion_clap') for m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "False"
