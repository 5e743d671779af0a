"""The laion: spec. A real 630k-audioset-best.pt is 600 MB and cannot be had offline, so the
loading path runs on a fake checkpoint with the same key layout: a RoBERTa-shaped text tower of
one layer, and (through a monkeypatched audio-tower lookup) a small PANN audio tower instead of
HTSAT. The missing-file errors are tested for real."""
from __future__ import annotations

from pathlib import Path

import torch

import pytest

from teminal.models import ModelFilesNotFound, ModelSpecError, TrainingProvenance, load_model
from teminal.models.laion import checkpoint as laion_checkpoint, loading as specs
from teminal.models.laion.checkpoint import fix_keys
from teminal.models.registry import parse_spec
from teminal.models.laion.tokenizers import find_roberta_dir

TEST_AUDIO = {  # a cheap PANN tower standing in for HTSAT
    "embed_dim": 512,
    "audio_cfg": {"model_type": "PANN", "model_name": "Cnn6", "sample_rate": 16000,
                  "clip_samples": 16000, "audio_length": 1024, "window_size": 512,
                  "hop_size": 320, "mel_bins": 64, "fmin": 50, "fmax": 8000, "class_num": 527},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 512, "heads": 8,
                 "layers": 12},
}
TINY_ROBERTA = {"num_hidden_layers": 1, "intermediate_size": 64, "max_position_embeddings": 80}


@pytest.fixture
def fake_laion(tmp_path, roberta_tokenizer_dir, monkeypatch):
    """(checkpoint path, source model): a LAION-layout checkpoint saved from DDP (module.
    prefix) by an old transformers (position_ids saved), with its state dict under
    'state_dict' next to other training state."""
    import json

    monkeypatch.setattr(laion_checkpoint, "audio_tower_config",
                        lambda state, source: ("PANN-test", TEST_AUDIO))
    vocab = len(json.loads((roberta_tokenizer_dir / "vocab.json").read_text()))
    roberta = {**laion_checkpoint.ROBERTA_BASE_CONFIG, **TINY_ROBERTA, "vocab_size": vocab}
    clap = {"embed_dim": 512, "audio_cfg": TEST_AUDIO["audio_cfg"],
            "text_cfg": {**TEST_AUDIO["text_cfg"], "model_type": "roberta"},
            "joint_embed_shape": 64, "enable_fusion": False, "fusion_type": "None"}
    config = {"name": "fake", "seed": 7, "clap": clap,
              "text": {"tokenizer": "roberta", "max_length": 77, "roberta_config": roberta},
              "audio": {"crop": "center", "spec_augment": "laion"}, "trainable": ["*"]}
    source = specs.build(config, roberta_tokenizer_dir).eval()
    state = {f"module.{k}": v for k, v in source.clap.state_dict().items()}
    state["module.text_branch.embeddings.position_ids"] = torch.arange(80)[None]
    path = tmp_path / "630k-audioset-best.pt"
    torch.save({"epoch": 45, "name": "fake", "state_dict": state}, path)
    return path, source


def test_fake_checkpoint_loads_with_fixed_keys_and_gives_the_same_embeddings(
        fake_laion, roberta_tokenizer_dir):
    path, source = fake_laion
    model = load_model(f"laion:{path}?text={roberta_tokenizer_dir}")
    assert model.config["name"] == "laion-PANN-test-roberta"
    assert model.config["clap"]["text_cfg"]["model_type"] == "roberta"
    assert model.config["text"]["roberta_config"]["num_hidden_layers"] == 1
    assert model.embed_dim == 64
    wave, texts = torch.randn(2, 16000), ["a dog barks", "dog before dog"]
    with torch.no_grad():
        assert torch.allclose(model.embed_audio(wave, 16000), source.embed_audio(wave, 16000))
        assert torch.allclose(model.embed_text(texts), source.embed_text(texts))
    tokens = model.tokenize(texts)
    assert tokens["input_ids"].shape == (2, 77) and tokens["attention_mask"].shape == (2, 77)
    # the paper's default subset, mapped onto this tower: last text layer + pooler + heads
    model.set_trainable(None)
    names = model.trainable_names()
    assert any(n.startswith("text_branch.encoder.layer.0.") for n in names)
    assert any(n.startswith("text_branch.pooler.") for n in names)
    assert not any(n.startswith("text_branch.embeddings.") for n in names)


def test_laion_model_saved_and_reloaded_carries_its_tokenizer(fake_laion, roberta_tokenizer_dir,
                                                              tmp_path, monkeypatch):
    path, _ = fake_laion
    model = load_model(f"laion:{path}?text={roberta_tokenizer_dir}")
    out = model.save(tmp_path / "stage_a", TrainingProvenance(stage="stage_a"))
    assert all((out / "tokenizer" / f).is_file() for f in ("vocab.json", "merges.txt"))
    monkeypatch.delenv("TEMINAL_ROBERTA_DIR", raising=False)
    for f in roberta_tokenizer_dir.iterdir():  # the original folder is gone
        f.unlink()
    again = load_model(str(out))
    with torch.no_grad():
        assert torch.equal(model.embed_text(["dog"]), again.embed_text(["dog"]))


def test_tokenizer_folder_from_the_environment(fake_laion, roberta_tokenizer_dir, monkeypatch):
    path, _ = fake_laion
    monkeypatch.setenv("TEMINAL_ROBERTA_DIR", str(roberta_tokenizer_dir))
    model = load_model(f"laion:{path}")
    assert model.config["text"]["dir"] == str(roberta_tokenizer_dir)


def test_tokenizer_from_an_existing_hugging_face_cache(tmp_path, monkeypatch,
                                                      roberta_tokenizer_dir):
    """A cache that already holds roberta-base (hub layout: refs/main -> snapshots/<commit>)."""
    repo = tmp_path / "hf-cache" / "models--FacebookAI--roberta-base"
    snapshot = repo / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0" * 40)
    for f in roberta_tokenizer_dir.iterdir():
        (snapshot / f.name).write_bytes(f.read_bytes())
    monkeypatch.delenv("TEMINAL_ROBERTA_DIR", raising=False)
    monkeypatch.setattr("teminal.models.laion.tokenizers.HF_CACHE_DIR", str(tmp_path / "hf-cache"))
    folder, missing = find_roberta_dir(None)
    assert missing == [] and folder == snapshot


@pytest.mark.filterwarnings("ignore:torch.meshgrid")  # inside laion's HTSAT
def test_htsat_tiny_roberta_base_builds_offline_and_embeds(roberta_tokenizer_dir):
    state = _htsat_tiny_roberta_shapes()
    model = specs.build(laion_checkpoint.laion_config_for(state, "630k.pt"),
                        roberta_tokenizer_dir).eval()
    n_train, n_total = model.set_trainable(None)  # the paper's patterns all match
    assert 150e6 < n_total < 165e6 and 20e6 < n_train < 26e6
    with torch.no_grad():
        audio = model.embed_audio(torch.randn(1, 44100 * 5), 44100)
        text = model.embed_text(["a dog barks"])
    assert audio.shape == text.shape == (1, 512)


# ---- missing files: real -------------------------------------------------------------------

def test_missing_checkpoint_and_tokenizer_are_both_named(tmp_path, monkeypatch):
    monkeypatch.delenv("TEMINAL_ROBERTA_DIR", raising=False)
    monkeypatch.setattr("teminal.models.laion.tokenizers._hf_cache_dir", lambda: None)
    ckpt = tmp_path / "630k-audioset-best.pt"
    with pytest.raises(ModelFilesNotFound) as err:
        load_model(f"laion:{ckpt}?text={tmp_path / 'roberta'}")
    message = str(err.value)
    assert str(ckpt) in message and "huggingface.co" in message and "LAION-AI/CLAP" in message
    assert str(tmp_path / "roberta" / "vocab.json") in message
    assert str(tmp_path / "roberta" / "merges.txt") in message
    assert "TEMINAL_ROBERTA_DIR" in message
    assert len(err.value.missing) == 3


def test_missing_tokenizer_without_a_folder_says_where_it_looked(tmp_path, monkeypatch,
                                                                 roberta_tokenizer_dir):
    monkeypatch.delenv("TEMINAL_ROBERTA_DIR", raising=False)
    monkeypatch.setattr("teminal.models.laion.tokenizers._hf_cache_dir", lambda: None)
    ckpt = tmp_path / "x.pt"
    ckpt.write_bytes(b"")
    with pytest.raises(ModelFilesNotFound) as err:
        load_model(f"laion:{ckpt}")
    assert [m.what for m in err.value.missing] == ["RoBERTa tokenizer vocab.json",
                                                   "RoBERTa tokenizer merges.txt"]
    # a folder with only one of the two files
    (roberta_tokenizer_dir / "merges.txt").unlink()
    with pytest.raises(ModelFilesNotFound, match="merges.txt") as err:
        load_model(f"laion:{ckpt}?text={roberta_tokenizer_dir}")
    assert len(err.value.missing) == 1


def test_unreadable_checkpoint_is_a_clear_error(tmp_path, roberta_tokenizer_dir):
    ckpt = tmp_path / "630k-audioset-best.pt"
    ckpt.write_bytes(b"not a torch file")
    with pytest.raises(ModelSpecError, match="cannot read checkpoint"):
        load_model(f"laion:{ckpt}?text={roberta_tokenizer_dir}")


# ---- spec syntax and key fixing on synthetic state dicts ---------------------------------

def _path_and_text(spec):
    parsed = parse_spec(spec)
    return parsed.path, parsed.options.get("text")


def test_parse_spec():
    assert _path_and_text("laion:/a/b.pt") == (Path("/a/b.pt"), None)
    assert _path_and_text("laion:/a/b.pt?text=/tok") == (Path("/a/b.pt"), "/tok")
    with pytest.raises(ModelSpecError, match="unknown option"):
        parse_spec("laion:/a/b.pt?txt=/tok")
    with pytest.raises(ModelSpecError, match="names no checkpoint"):
        parse_spec("laion:")


class _WithPositionIds(torch.nn.Module):
    def __init__(self, saved: bool):
        super().__init__()
        self.text_branch = torch.nn.Module()
        self.text_branch.embeddings = torch.nn.Module()
        self.text_branch.embeddings.register_buffer("position_ids", torch.arange(5)[None],
                                                    persistent=saved)
        self.proj = torch.nn.Linear(2, 2)


def test_fix_keys_drops_position_ids_the_model_does_not_save():
    model = _WithPositionIds(saved=False)
    state = {"module.proj.weight": torch.ones(2, 2), "module.proj.bias": torch.zeros(2),
             "module.text_branch.embeddings.position_ids": torch.arange(5)[None]}
    fixed = fix_keys(state, model)
    assert sorted(fixed) == ["proj.bias", "proj.weight"]
    model.load_state_dict(fixed, strict=True)


def test_fix_keys_adds_position_ids_the_model_saves():
    model = _WithPositionIds(saved=True)
    fixed = fix_keys({"proj.weight": torch.ones(2, 2), "proj.bias": torch.zeros(2)}, model)
    assert torch.equal(fixed["text_branch.embeddings.position_ids"], torch.arange(5)[None])
    model.load_state_dict(fixed, strict=True)


def test_fusion_and_foreign_checkpoints_are_refused():
    with pytest.raises(ModelSpecError, match="fusion"):
        laion_checkpoint.laion_config_for(
            {"audio_branch.fusion_model.local_att.0.weight": torch.zeros(1)}, "f.pt")
    with pytest.raises(ModelSpecError, match="not HTSAT"):
        laion_checkpoint.laion_config_for({"audio_branch.conv_block1.conv1.weight":
                                           torch.zeros(1)}, "p.pt")


def _htsat_tiny_roberta_shapes() -> dict:
    """The keys of 630k-audioset-best.pt that the architecture is inferred from."""
    return {"audio_branch.patch_embed.proj.weight": torch.zeros(96, 1, 4, 4),
             "audio_projection.0.weight": torch.zeros(512, 768),
             "text_branch.embeddings.word_embeddings.weight": torch.zeros(50265, 768),
             "text_branch.embeddings.position_embeddings.weight": torch.zeros(514, 768),
             "text_branch.embeddings.token_type_embeddings.weight": torch.zeros(1, 768),
             "text_branch.encoder.layer.0.intermediate.dense.weight": torch.zeros(3072, 768),
             "text_branch.encoder.layer.11.output.dense.weight": torch.zeros(768, 3072)}


def test_htsat_tiny_with_roberta_is_inferred_from_key_shapes():
    config = laion_checkpoint.laion_config_for(_htsat_tiny_roberta_shapes(), "630k.pt")
    assert config["name"] == "laion-HTSAT-tiny-roberta"
    assert config["clap"]["audio_cfg"]["model_name"] == "tiny"
    assert config["clap"]["audio_cfg"]["sample_rate"] == 48000
    assert config["clap"]["embed_dim"] == 768 and config["clap"]["joint_embed_shape"] == 512
    assert config["text"]["roberta_config"] == laion_checkpoint.ROBERTA_BASE_CONFIG
    assert config["trainable"] == ["audio_branch.layers.3.*", "audio_branch.norm.*",
                                   "audio_projection.*", "text_branch.encoder.layer.11.*",
                                   "text_branch.pooler.*", "text_projection.*", "logit_scale_a"]


# ---- the way back out: a .pt laion-clap's own load_ckpt reads --------------------------------

def test_a_laion_export_loads_through_load_ckpts_own_steps_with_the_same_embeddings(
        fake_laion, roberta_tokenizer_dir, tmp_path):
    """CLAP_Module.load_ckpt(path) is laion's factory.load_state_dict(path, skip_params=True)
    (state_dict entry, `module.` stripped, position_ids deleted) and a strict load into the
    CLAP create_model built. CLAP_Module itself reaches for a hub tokenizer, so the same steps
    run on laion's own CLAP class built offline from the model's config."""
    import torch.nn.functional as F

    from teminal.models.export import export
    from teminal.models.laion.library import _submodule, build_clap

    model = load_model(f"laion:{fake_laion[0]}?text={roberta_tokenizer_dir}")
    with torch.no_grad():  # as if post-trained: the export is not the file it came from
        for p in model.clap.audio_projection.parameters():
            p.add_(0.01)
    out, card = export(model, "laion", tmp_path / "teminal.pt")
    laion = build_clap(model.config["clap"], model.config["text"]["roberta_config"]).eval()
    laion.load_state_dict(_submodule("factory").load_state_dict(str(out), skip_params=True))
    g = torch.Generator().manual_seed(0)
    wave = 0.1 * torch.randn(2, model.clip_samples, generator=g)
    texts = ["a dog barks", "siren before rain"]
    with torch.no_grad():
        # get_audio_embedding's steps (a PANN tower takes the tensor, not laion's dict)
        theirs = F.normalize(laion.audio_projection(laion.encode_audio(wave, "cpu")["embedding"]),
                             dim=-1)
        assert torch.allclose(model.embed_audio(wave, model.sample_rate), theirs, atol=1e-5)
        theirs = laion.get_text_embedding(dict(model.tokenize(texts)))
        assert torch.allclose(model.embed_text(texts), theirs, atol=1e-5)
    assert "load_ckpt('teminal.pt')" in card.read_text()


def test_laion_exports_name_the_audio_tower_clap_module_builds():
    from types import SimpleNamespace

    from teminal.models.laion.export import amodel_name

    config = laion_checkpoint.laion_config_for(_htsat_tiny_roberta_shapes(), "630k.pt")
    assert amodel_name(SimpleNamespace(config=config)) == "HTSAT-tiny"


def test_the_small_model_has_no_laion_format(small_model, tmp_path):
    from teminal.models.export import ExportError, export

    with pytest.raises(ExportError, match="family small.*checkpoint folder"):
        export(small_model, "laion", tmp_path / "x.pt")
    assert not (tmp_path / "x.pt").exists()
