"""The small CLAP through the adapter: shapes, determinism, audio input, trainable subset,
save and load."""
from __future__ import annotations

import json
import logging

import pytest
import torch

from teminal.models import ClapModel, ModelSpecError, TrainingProvenance, load_model
from teminal.models.audio_input import fit_length


def test_shape_of_the_small_model(small_model):
    assert isinstance(small_model, ClapModel) and isinstance(small_model, torch.nn.Module)
    assert (small_model.sample_rate, small_model.clip_samples, small_model.embed_dim) == \
        (16000, 160000, 256)
    assert small_model.config["name"] == "small-cnn6"
    assert small_model.config["source"] == "small"
    assert small_model.config["extra"] == {}
    with torch.no_grad():
        audio = small_model.embed_audio(torch.randn(3, 16000), 16000)
        text = small_model.embed_text(["dog barking before siren", "rain", "a b c"])
    assert audio.shape == (3, 256) and text.shape == (3, 256)
    assert torch.allclose(audio.norm(dim=-1), torch.ones(3), atol=1e-5)
    assert torch.allclose(text.norm(dim=-1), torch.ones(3), atol=1e-5)
    assert small_model.embed_text([]).shape == (0, 256)
    assert float(small_model.logit_scale().detach()) == pytest.approx(1 / 0.07, rel=1e-5)


def test_logit_scale_is_clamped_to_100(small_model):
    with torch.no_grad():
        small_model.clap.logit_scale_a.fill_(10.0)
    assert float(small_model.logit_scale().detach()) == pytest.approx(100.0)


def test_random_init_is_seeded_and_leaves_the_global_rng_alone(small_model_session):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    again = load_model("small")
    assert torch.equal(torch.rand(3), expected)
    for (name, p), (_, q) in zip(small_model_session.state_dict().items(),
                                 again.state_dict().items()):
        assert torch.equal(p, q), name


def test_embeddings_are_deterministic_in_eval_mode(small_model):
    torch.manual_seed(0)
    long_clip = torch.randn(2, 250000)  # longer than 10 s at 16 kHz: cropped, never at random
    with torch.no_grad():
        first = small_model.embed_audio(long_clip, 16000)
        second = small_model.embed_audio(long_clip, 16000)
        texts = small_model.embed_text(["a", "b"]), small_model.embed_text(["a", "b"])
    assert torch.equal(first, second)
    assert torch.equal(*texts)


def test_fit_length_repeat_pads_and_centre_crops():
    wave = torch.arange(1, 4, dtype=torch.float32)[None]  # [1, 2, 3]
    assert fit_length(wave, 8).tolist() == [[1, 2, 3, 1, 2, 3, 0, 0]]
    long = torch.arange(10, dtype=torch.float32)[None]
    assert fit_length(long, 4).tolist() == [[3, 4, 5, 6]]
    assert fit_length(long, 4, "start").tolist() == [[0, 1, 2, 3]]
    # zero-padded batch of different durations: each row fitted from its own samples
    batch = torch.tensor([[1.0, 2.0, 0.0], [1.0, 2.0, 3.0]])
    assert fit_length(batch, 6, lengths=torch.tensor([2, 3])).tolist() == \
        [[1, 2, 1, 2, 1, 2], [1, 2, 3, 1, 2, 3]]


def test_48khz_input_is_resampled_once_with_a_log_line(small_model, caplog):
    import torchaudio

    torch.manual_seed(1)
    wave48 = torch.randn(2, 48000 * 2)
    with caplog.at_level(logging.INFO, logger="teminal.models"), torch.no_grad():
        got = small_model.embed_audio(wave48, 48000)
        small_model.embed_audio(wave48, 48000)
        expected = small_model.embed_audio(torchaudio.functional.resample(wave48, 48000, 16000),
                                           16000)
    assert torch.allclose(got, expected, atol=1e-5)
    notes = [r.message for r in caplog.records if "resampling" in r.message]
    assert notes == ["resampling audio from 48000 Hz to the model's 16000 Hz"]


def test_audio_must_be_a_batch(small_model):
    with pytest.raises(ValueError, match="batch"):
        small_model.embed_audio(torch.randn(16000), 16000)


def test_long_text_keeps_its_end_of_text_token(small_model):
    tokens = small_model.tokenize(["word " * 300, "short"])
    eot = small_model.tokenizer.eot
    assert tokens.shape == (2, 77)
    assert int(tokens[0, -1]) == eot and int(tokens[0].argmax()) == 76
    assert int(tokens[1].argmax()) == int((tokens[1] == eot).nonzero()[0])


def test_forward_is_the_ddp_entry_point(small_model):
    tokens = small_model.tokenize(["a", "b"])
    audio_emb, text_emb = small_model(audio=torch.randn(2, 16000), text_tokens=tokens)
    assert audio_emb.shape == text_emb.shape == (2, 256)
    assert small_model(text_tokens=tokens)[0] is None
    assert small_model(audio=torch.randn(1, 16000))[1] is None


# ---- trainable subset -----------------------------------------------------------------

def test_default_trainable_subset_names_and_counts(small_model):
    n_train, n_total = small_model.set_trainable(None)
    names = small_model.trainable_names()
    assert n_total == sum(p.numel() for p in small_model.clap.parameters())
    assert n_train == sum(p.numel() for p in small_model.parameters() if p.requires_grad)
    prefixes = ("audio_branch.conv_block4.", "audio_branch.fc1.", "audio_projection.",
                "text_branch.resblocks.1.", "ln_final.", "text_projection.", "logit_scale_a")
    assert all(n.startswith(prefixes) for n in names), names
    assert all(any(n.startswith(p) for n in names) for p in prefixes)
    assert not any("conv_block1" in n or "token_embedding" in n or "bn0" in n for n in names)
    assert 4_000_000 < n_train < 5_500_000 and 23_000_000 < n_total < 25_000_000


def test_the_word_default_widens_the_default_subset_in_place(small_model):
    small_model.set_trainable(None)
    default = set(small_model.trainable_names())
    small_model.set_trainable(["default", "text_branch.resblocks.0.*"])
    widened = set(small_model.trainable_names())
    assert default < widened
    assert widened - default == {n for n, _ in small_model.clap.named_parameters()
                                 if n.startswith("text_branch.resblocks.0.")}


def test_resolve_splices_the_default_and_drops_repeats():
    from teminal.models.trainable import resolve

    assert resolve(None, ["a.*", "b.*"]) == ["a.*", "b.*"]
    assert resolve(["x.*", "default", "a.*"], ["a.*", "b.*"]) == ["x.*", "a.*", "b.*"]
    assert resolve("default", ["a.*"]) == ["a.*"]


def test_front_end_is_never_trained(small_model):
    n_train, n_total = small_model.set_trainable(["*"])
    frozen = [n for n, p in small_model.clap.named_parameters() if not p.requires_grad]
    assert sorted(frozen) == ["audio_branch.logmel_extractor.melW",
                              "audio_branch.spectrogram_extractor.stft.conv_imag.weight",
                              "audio_branch.spectrogram_extractor.stft.conv_real.weight"]
    assert 19_000_000 < n_train < 20_500_000


def test_regex_patterns_and_unknown_patterns(small_model):
    n_train, _ = small_model.set_trainable([r"re:text_branch\.resblocks\.[01]\.mlp\..*"])
    assert set(small_model.trainable_names()) == {
        f"text_branch.resblocks.{i}.mlp.{m}.{w}" for i in (0, 1) for m in ("c_fc", "c_proj")
        for w in ("weight", "bias")}
    with pytest.raises(ValueError, match="match no parameter"):
        small_model.set_trainable(["audio_branch.no_such_block.*"])


def test_frozen_parameters_get_no_gradient_and_frozen_norms_keep_their_statistics(small_model):
    small_model.set_trainable(None)
    small_model.train()
    bn_frozen = small_model.clap.audio_branch.conv_block1.bn1
    bn_trained = small_model.clap.audio_branch.conv_block4.bn1
    stats_before = bn_frozen.running_mean.clone(), bn_trained.running_mean.clone()
    tokens = small_model.tokenize(["a dog", "a cat"])
    audio_emb, text_emb = small_model(audio=torch.randn(2, 16000), text_tokens=tokens)
    (small_model.logit_scale() * audio_emb @ text_emb.T).logsumexp(-1).sum().backward()
    for name, p in small_model.clap.named_parameters():
        if p.requires_grad:
            assert p.grad is not None, name
        else:
            assert p.grad is None, name
    assert not bn_frozen.training and bn_trained.training
    assert torch.equal(bn_frozen.running_mean, stats_before[0])
    assert not torch.equal(bn_trained.running_mean, stats_before[1])


def test_spec_augment_survives_short_frame_counts(small_model):
    """Regression: laion's stock SpecAugment drops up to 64 frames and crashes torchlibrosa
    (randint on an empty range) on the small model's 63-frame clips in about 40% of batches.
    (The bundled config now has no SpecAugment; a config may still ask for these widths.)"""
    small_model._set_spec_augment({"time_drop_width": 4, "time_stripes_num": 2,
                                   "freq_drop_width": 8, "freq_stripes_num": 2})
    small_model.train()
    torch.manual_seed(0)
    for _ in range(30):
        small_model.clap.audio_branch.spec_augmenter(torch.randn(16, 1, 63, 64))


# ---- save / load ----------------------------------------------------------------------

def test_save_and_load_round_trip_gives_identical_embeddings(small_model, tmp_path):
    small_model.set_trainable(None)
    with torch.no_grad():  # make the weights differ from the seeded init
        for p in small_model.clap.audio_projection.parameters():
            p.add_(0.01)
    provenance = TrainingProvenance(stage="stage_a", build_id="b1")
    out = small_model.save(tmp_path / "ckpt", provenance)
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "model.safetensors"]
    config = json.loads((out / "config.json").read_text())
    assert config["extra"] == provenance.to_dict()
    assert config["clap"] == small_model.config["clap"]
    loaded = load_model(str(out))
    assert loaded.config["extra"]["stage"] == "stage_a"
    assert loaded.config["source"] == str(out)
    wave = torch.randn(2, 20000)
    with torch.no_grad():
        assert torch.equal(small_model.eval().embed_audio(wave, 16000),
                           loaded.embed_audio(wave, 16000))
        texts = ["x before y"]
        assert torch.equal(small_model.embed_text(texts), loaded.embed_text(texts))
    # a run folder stands for its final/ export
    run = tmp_path / "run"
    small_model.save(run / "final")
    assert load_model(str(run)).config["source"] == str(run / "final")


def test_unknown_spec_and_incomplete_checkpoint_folder(tmp_path):
    with pytest.raises(ModelSpecError, match="unknown model spec"):
        load_model("no-such-model")
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match="model.safetensors"):
        load_model(str(tmp_path))


def test_the_same_weights_saved_twice_are_the_same_bytes(tmp_path):
    """safetensors serialises a metadata dict in hash order, which changes from one save to the
    next (two keys gave two different files 1 time in 2): a checkpoint's bytes must depend on
    its weights only."""
    import hashlib

    from teminal.models.adapter import write_safetensors

    digests = set()
    for i in range(12):
        path = tmp_path / f"{i}.safetensors"
        write_safetensors(path, {"a": torch.arange(4.0), "b": torch.ones(2)})
        digests.add(hashlib.sha256(path.read_bytes()).hexdigest())
    assert len(digests) == 1
