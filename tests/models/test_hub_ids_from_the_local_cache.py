"""Hub ids and released file names resolve from the local caches, offline (issue 26,
"Checkpoints in and out"): a user who ran `hf download` once needs no paths. Tiny models of
each family are placed in a temporary HF_HUB_CACHE; no test may reach the network."""
from __future__ import annotations

import socket

import pytest
import torch

from teminal.models import ModelFilesNotFound, load_model
from teminal.models import registry
from teminal.models.registry import parse_spec, spec_label, weights_file
from teminal.testing import place_in_hf_cache

REPO = "laion/clap-htsat-unfused"


@pytest.fixture
def hub(tmp_path, monkeypatch):
    """An empty hub cache in HF_HUB_CACHE, offline, and no socket may connect."""
    cache = tmp_path / "hub"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")

    def no_network(*args, **kwargs):
        raise AssertionError("a model spec tried to reach the network")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    return cache


def test_an_hf_repo_id_loads_its_cached_snapshot(hub, tiny_hf_dir):
    snapshot = place_in_hf_cache(hub, REPO, tiny_hf_dir)
    parsed = parse_spec(f"hf:{REPO}")
    assert parsed.family == "hf" and parsed.path == snapshot and parsed.cached_from == REPO
    assert spec_label(f"hf:{REPO}") == "clap-htsat-unfused"
    assert weights_file(f"hf:{REPO}") == snapshot / "model.safetensors"
    cached, direct = load_model(f"hf:{REPO}"), load_model(f"hf:{tiny_hf_dir}")
    texts = ["a dog barks", "rain falls"]
    with torch.no_grad():
        assert torch.allclose(cached.embed_text(texts), direct.embed_text(texts))


def test_an_hf_repo_id_missing_from_the_cache_names_it_and_the_download_command(hub):
    with pytest.raises(ModelFilesNotFound) as e:
        load_model(f"hf:{REPO}")
    message = str(e.value)
    assert f"Hugging Face model {REPO}" in message and str(hub) in message
    assert f"`hf download {REPO}`" in message
    assert spec_label(f"hf:{REPO}") == "clap-htsat-unfused"  # labels never fail


def test_a_local_folder_of_the_same_name_wins(hub, tiny_hf_dir, tmp_path, monkeypatch):
    import shutil

    place_in_hf_cache(hub, REPO, tiny_hf_dir)
    monkeypatch.chdir(tmp_path)
    shutil.copytree(tiny_hf_dir, tmp_path / REPO)
    parsed = parse_spec(f"hf:{REPO}")
    assert parsed.path.resolve() == (tmp_path / REPO).resolve() and parsed.cached_from is None


def test_paths_are_never_taken_for_hub_ids(hub):
    for spec in ("hf:/abs/missing", "hf:./rel/missing", "hf:a/b/c", "laion:/x/630k-audioset-best.pt"):
        assert parse_spec(spec).cached_from is None  # left to the loader's missing-file error


def test_laion_weights_by_name_from_the_hub_cache_and_laion_clap_s_folder(hub, tmp_path,
                                                                        monkeypatch):
    name = "630k-audioset-best.pt"
    monkeypatch.setattr(registry, "_library_folders", lambda family: [tmp_path / "laion_clap"])
    with pytest.raises(ModelFilesNotFound) as e:
        parse_spec(f"laion:{name}")
    assert f"`hf download lukewys/laion_clap {name}`" in str(e.value)
    assert str(tmp_path / "laion_clap") in str(e.value)

    (tmp_path / name).write_bytes(b"weights")
    snapshot = place_in_hf_cache(hub, "lukewys/laion_clap", tmp_path / name)
    parsed = parse_spec(f"laion:{name}?text=/tok")
    assert parsed.path == snapshot / name and parsed.options == {"text": "/tok"}
    assert spec_label(f"laion:{name}") == "630k-audioset-best"
    # where laion-clap's own load_ckpt puts its download comes first
    (tmp_path / "laion_clap").mkdir()
    (tmp_path / "laion_clap" / name).write_bytes(b"weights")
    assert parse_spec(f"laion:{name}").path == tmp_path / "laion_clap" / name


def test_msclap_weights_by_name_load_from_the_hub_cache(hub, tiny_msclap):
    path, tok = tiny_msclap("2023")
    place_in_hf_cache(hub, "microsoft/msclap", path)
    cached = load_model(f"msclap:{path.name}?version=2023&text={tok}")
    direct = load_model(f"msclap:{path}?version=2023&text={tok}")
    assert cached.weights_sha256 == direct.weights_sha256
    with pytest.raises(ModelFilesNotFound, match="hf download microsoft/msclap CLAP_weights_2022.pth"):
        parse_spec("msclap:CLAP_weights_2022.pth?version=2022")
