"""Family msclap: Microsoft CLAP through msclap's own model modules. The proof of the route:
on a random checkpoint written in msclap's format, our embeddings equal those of msclap's own
CLAPWrapper (its text preprocessing, its audio repeat-and-cut, its CLAP modules), which is
built here for real with only the hub look-ups replaced by the local files."""
from __future__ import annotations

import importlib
import warnings

import pytest
import torch
import torch.nn.functional as F

from teminal.models import ModelFilesNotFound, ModelSpecError, load_model
from teminal.models.msclap.library import htsat_sizes, msclap_modules, text_model_from_config
from teminal.testing import TINY_HTSAT, tiny_msclap_text_config


def _msclap_wrapper(monkeypatch, path, tok_dir, version):
    """msclap's own CLAPWrapper(model_fp=path, version=...) with AutoModel/AutoTokenizer
    pointed at the tiny text config and the local tokenizer files."""
    import json

    msclap_modules()
    with warnings.catch_warnings():  # CLAPWrapper's import switches every warning off
        wrapper_module = importlib.import_module("msclap.CLAPWrapper")
    from transformers import BertTokenizer, GPT2Tokenizer
    from transformers.utils import logging as hf_logging

    monkeypatch.setattr(hf_logging, "set_verbosity_error", lambda: None)
    if version == "2022":
        vocab = len((tok_dir / "vocab.txt").read_text().split())
        tok_cls = BertTokenizer
    else:
        vocab = len(json.loads((tok_dir / "vocab.json").read_text()))
        tok_cls = GPT2Tokenizer

    class EncodePlus:
        """transformers 5 removed `encode_plus`, which CLAPWrapper.preprocess_text calls: it
        was the single-text form of `__call__`."""

        def __init__(self, tok):
            self._tok = tok

        def __getattr__(self, name):
            return getattr(self._tok, name)

        def encode_plus(self, text, **kwargs):
            return self._tok(text, **kwargs)

    class LocalTokenizer:
        @staticmethod
        def from_pretrained(name, *a, **k):
            assert name == ("bert-base-uncased" if version == "2022" else "gpt2")
            return EncodePlus(tok_cls.from_pretrained(str(tok_dir), local_files_only=True))

    monkeypatch.setattr(wrapper_module, "AutoTokenizer", LocalTokenizer)
    # the tiny towers' widths in place of the released 768 / 2048 (everything else: msclap's)
    original_args = wrapper_module.CLAPWrapper.read_config_as_args
    out_emb = 2048 if version == "2022" else TINY_HTSAT["embed_dim"] * 8

    def tiny_args(self, *a, **k):
        args = original_args(self, *a, **k)
        args.out_emb, args.transformer_embed_dim = out_emb, 32
        return args

    monkeypatch.setattr(wrapper_module.CLAPWrapper, "read_config_as_args", tiny_args)
    with text_model_from_config(tiny_msclap_text_config(version, vocab)), \
            htsat_sizes(TINY_HTSAT if version == "2023" else None):
        return wrapper_module.CLAPWrapper(model_fp=str(path), version=version, use_cuda=False)


@pytest.mark.parametrize("version", ["2023", "2022"])
def test_embeddings_equal_msclaps_own_wrapper_on_a_random_msclap_checkpoint(
        version, tiny_msclap, monkeypatch):
    path, tok = tiny_msclap(version)
    ours = load_model(f"msclap:{path}?version={version}&text={tok}")
    ref = _msclap_wrapper(monkeypatch, path, tok, version)
    assert (ours.family, ours.sample_rate) == ("msclap", 44100)
    assert ours.clip_samples == (5 if version == "2022" else 7) * 44100
    g = torch.Generator().manual_seed(1)
    clips = {"a.wav": 0.1 * torch.randn(2 * 44100, generator=g),   # repeated and cut
             "b.wav": 0.1 * torch.randn(44100 + 17, generator=g),
             "c.wav": 0.1 * torch.randn(ours.clip_samples, generator=g)}  # exactly the length
    monkeypatch.setattr(ref, "read_audio", lambda name, resample=True: (clips[name], 44100))
    texts = ["a dog barks", "siren before rain", "the sound of rain while a dog barks"]
    with torch.no_grad():
        expect_audio = F.normalize(ref.get_audio_embeddings(list(clips)), dim=-1)
        expect_text = F.normalize(ref.get_text_embeddings(texts), dim=-1)
        lengths = torch.tensor([len(w) for w in clips.values()])
        batch = torch.nn.utils.rnn.pad_sequence(list(clips.values()), batch_first=True)
        got_audio = ours.embed_audio(batch, 44100, lengths)
        got_text = ours.embed_text(texts)
    assert torch.allclose(got_audio, expect_audio, atol=1e-5), (got_audio - expect_audio).abs().max()
    assert torch.allclose(got_text, expect_text, atol=1e-5), (got_text - expect_text).abs().max()


def test_every_missing_file_is_named_at_once(tmp_path):
    with pytest.raises(ModelFilesNotFound) as err:
        load_model(f"msclap:{tmp_path}/CLAP_weights_2022.pth?version=2022&text={tmp_path}/tok")
    text = str(err.value)
    assert "2 missing" in text and "CLAP_weights_2022.pth" in text and "vocab.txt" in text
    assert "hf download microsoft/msclap" in text


def test_version_is_required_and_must_match_the_weights(tiny_msclap, tmp_path):
    path, tok = tiny_msclap("2023")
    with pytest.raises(ModelSpecError, match=r"\?version=2022"):
        load_model(f"msclap:{path}?text={tok}")
    from teminal.testing import write_fake_bert_vocab

    bert = write_fake_bert_vocab(tmp_path / "bert")
    with pytest.raises(ModelSpecError, match="version=2022"):
        load_model(f"msclap:{path}?version=2022&text={bert}")


def test_an_msclap_export_loads_in_msclaps_own_wrapper_with_the_same_embeddings(
        tiny_msclap, tmp_path, monkeypatch):
    """The .pth of `teminal.models.export --format msclap` is what CLAPWrapper(model_fp=...)
    loads: every key of msclap's CLAP, nothing else; an order-aware head is refused unless
    --without-head, and then the file is the pooled model."""
    from teminal.models.export import ExportError, export

    path, tok = tiny_msclap("2023")
    ours = load_model(f"msclap:{path}?version=2023&text={tok}")
    ours.add_audio_head("moment_contrast")
    with torch.no_grad():  # as if post-trained: neither the base nor a head adding 0
        for p in [*ours.clap.audio_encoder.projection.parameters(),
                  *ours.audio_head.parameters()]:
            p.add_(0.01)
    with pytest.raises(ExportError, match="order-aware audio head.*--without-head"):
        export(ours, "msclap", tmp_path / "refused.pth")
    out, card = export(ours, "msclap", tmp_path / "teminal.pth", without_head=True)
    assert "Dropped" in card.read_text()
    ref = _msclap_wrapper(monkeypatch, out, tok, "2023")
    assert set(torch.load(out)["model"]) == set(ref.clap.state_dict())
    ours.audio_head = None  # what the file holds: the pooled model
    g = torch.Generator().manual_seed(2)
    clips = {"c.wav": 0.1 * torch.randn(ours.clip_samples, generator=g)}
    monkeypatch.setattr(ref, "read_audio", lambda name, resample=True: (clips[name], 44100))
    texts = ["a dog barks", "siren before rain"]
    with torch.no_grad():
        expect_audio = F.normalize(ref.get_audio_embeddings(list(clips)), dim=-1)
        expect_text = F.normalize(ref.get_text_embeddings(texts), dim=-1)
        assert torch.allclose(ours.embed_audio(clips["c.wav"][None], 44100), expect_audio,
                              atol=1e-5)
        assert torch.allclose(ours.embed_text(texts), expect_text, atol=1e-5)
