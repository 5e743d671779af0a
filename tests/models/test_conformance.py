"""One conformance suite over every model family, on tiny random weights: what trainers and
evaluators rely on (teminal.models.interface.AudioTextModel) holds for each of them.

Stand-ins: small-hf = the small model with a tiny random BERT as its pretrained text tower
(the path small-minilm takes); laion = a LAION-layout checkpoint with a PANN audio tower in place of HTSAT (as in
test_laion_spec.py); hf = a tiny transformers ClapModel; msclap-2023 = tiny HTSAT + GPT-2;
msclap-2022 = msclap's real CNN14 (fixed size) + a tiny BERT."""
from __future__ import annotations

import json
import socket

import pytest
import torch
import torch.nn.functional as F

from teminal.models import AudioTextModel, TrainingProvenance, load_model, weights_file
from teminal.manifests.digests import file_sha256

FAMILIES = ["small", "small-hf", "laion", "hf", "msclap-2023", "msclap-2022"]
TEXTS = ["a dog barks", "siren before rain", "rain while a dog barks"]

# hop 160: 100 frames a second; laion's stock SpecAugment drops up to 64 frames in training
PANN = {"model_type": "PANN", "model_name": "Cnn6", "sample_rate": 16000, "clip_samples": 16000,
        "audio_length": 1024, "window_size": 512, "hop_size": 160, "mel_bins": 64, "fmin": 50,
        "fmax": 8000, "class_num": 527}


def _write_fake_laion(folder, tok_dir):
    """A LAION-layout checkpoint (state dict under 'state_dict', `module.` prefixes) whose
    audio tower is a small PANN; loading it needs `_pann_stand_in`."""
    from teminal.models.laion import checkpoint as laion_checkpoint, loading as specs

    vocab = len(json.loads((tok_dir / "vocab.json").read_text()))
    roberta = {**laion_checkpoint.ROBERTA_BASE_CONFIG, "num_hidden_layers": 1,
               "intermediate_size": 64, "max_position_embeddings": 80, "vocab_size": vocab}
    text_cfg = {"context_length": 77, "vocab_size": 49408, "width": 512, "heads": 8,
                "layers": 12, "model_type": "roberta"}
    clap = {"embed_dim": 512, "audio_cfg": PANN, "text_cfg": text_cfg, "joint_embed_shape": 64,
            "enable_fusion": False, "fusion_type": "None"}
    config = {"name": "fake", "seed": 3, "clap": clap,
              "text": {"tokenizer": "roberta", "max_length": 77, "roberta_config": roberta},
              "audio": {"crop": "center", "spec_augment": False}, "trainable": ["*"]}
    source = specs.build(config, tok_dir)
    path = folder / "630k-audioset-best.pt"
    torch.save({"state_dict": {f"module.{k}": v for k, v in source.clap.state_dict().items()}},
               path)
    return path


def _pann_stand_in(mp):
    from teminal.models.laion import checkpoint as laion_checkpoint

    base = {"embed_dim": 512, "audio_cfg": PANN, "text_cfg": {
        "context_length": 77, "vocab_size": 49408, "width": 512, "heads": 8, "layers": 12}}
    mp.setattr(laion_checkpoint, "audio_tower_config", lambda state, source: ("PANN-test", base))


@pytest.fixture(scope="module")
def spec_of(tmp_path_factory, tiny_hf_dir, tiny_msclap):
    from teminal.testing import write_fake_roberta_tokenizer

    made = {}

    def get(family: str) -> str:
        if family not in made:
            if family == "small":
                made[family] = "small"
            elif family == "small-hf":
                from teminal.testing import tiny_small_hf_config, write_tiny_hf_encoder

                folder = tmp_path_factory.mktemp("small-hf")
                made[family] = str(tiny_small_hf_config(
                    folder, write_tiny_hf_encoder(folder / "encoder")))
            elif family == "laion":
                folder = tmp_path_factory.mktemp("laion")
                tok = write_fake_roberta_tokenizer(folder / "roberta")
                made[family] = f"laion:{_write_fake_laion(folder, tok)}?text={tok}"
            elif family == "hf":
                made[family] = f"hf:{tiny_hf_dir}"
            else:
                version = family.split("-")[1]
                path, tok = tiny_msclap(version)
                made[family] = f"msclap:{path}?version={version}&text={tok}"
        return made[family]

    return get


class NoNetwork:
    """Records (and refuses) every attempt to resolve a host or connect a socket."""

    def __init__(self, mp):
        self.attempts = []

        def refuse(what):
            def call(*args, **kwargs):
                self.attempts.append((what, args[:2]))
                raise OSError(f"network access in a test: {what}{args[:2]}")
            return call

        mp.setattr(socket.socket, "connect", refuse("connect"))
        mp.setattr(socket.socket, "connect_ex", refuse("connect_ex"))
        mp.setattr(socket, "create_connection", refuse("create_connection"))
        mp.setattr(socket, "getaddrinfo", refuse("getaddrinfo"))


def _load(spec: str, family: str):
    with pytest.MonkeyPatch.context() as mp:
        guard = NoNetwork(mp)
        if family == "laion":
            _pann_stand_in(mp)
        model = load_model(spec)
        with torch.no_grad():
            model.embed_text(TEXTS[:1])
            model.embed_audio(torch.zeros(1, 800), 16000)
    return model, guard.attempts


@pytest.fixture(scope="module", params=FAMILIES)
def loaded(request, spec_of):
    family = request.param
    spec = spec_of(family)
    model, attempts = _load(spec, family)
    return family, spec, model, attempts


def _waves(model, n=3, seconds=1.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    return 0.1 * torch.randn(n, int(seconds * model.sample_rate), generator=g)


def test_loading_and_embedding_open_no_socket(loaded):
    family, _, model, attempts = loaded
    assert attempts == []
    assert isinstance(model, AudioTextModel)
    assert model.family == family.split("-")[0]


def test_embeddings_are_l2_normalised_with_the_declared_size(loaded):
    model = loaded[2]
    with torch.no_grad():
        audio = model.embed_audio(_waves(model), model.sample_rate)
        text = model.embed_text(TEXTS)
    assert audio.shape == (3, model.embed_dim) and text.shape == (3, model.embed_dim)
    for emb in (audio, text):
        assert torch.allclose(emb.norm(dim=-1), torch.ones(len(emb)), atol=1e-5)


def test_embeddings_are_deterministic_and_independent_of_the_batch(loaded):
    model = loaded[2]
    waves = _waves(model)
    with torch.no_grad():
        batch = model.embed_audio(waves, model.sample_rate)
        again = model.embed_audio(waves, model.sample_rate)
        alone = torch.cat([model.embed_audio(w[None], model.sample_rate) for w in waves])
        text_batch = model.embed_text(TEXTS)
        text_alone = torch.cat([model.embed_text([t]) for t in TEXTS])
    assert torch.equal(batch, again)
    assert torch.allclose(batch, alone, atol=1e-5)
    assert torch.allclose(text_batch, text_alone, atol=1e-5)


def test_audio_at_another_rate_is_resampled_to_the_models(loaded):
    import torchaudio

    model = loaded[2]
    other = 22050 if model.sample_rate != 22050 else 16000
    g = torch.Generator().manual_seed(1)
    wave = 0.1 * torch.randn(2, other, generator=g)
    expect = torchaudio.transforms.Resample(other, model.sample_rate)(wave)
    with torch.no_grad():
        got = model.embed_audio(wave, other)
        ref = model.embed_audio(expect, model.sample_rate)
    assert torch.allclose(got, ref, atol=1e-5)


def test_save_then_load_gives_identical_embeddings_and_records_the_weights(loaded, tmp_path):
    family, _, model, _ = loaded
    folder = model.save(tmp_path / "ckpt", TrainingProvenance(stage="stage_b", init="x"))
    back = load_model(str(folder))
    assert back.family == model.family and back.config["extra"]["stage"] == "stage_b"
    assert back.weights_sha256 == file_sha256(weights_file(str(folder)))
    waves = _waves(model, n=2)
    with torch.no_grad():
        assert torch.allclose(back.embed_audio(waves, model.sample_rate),
                              model.embed_audio(waves, model.sample_rate), atol=1e-6)
        assert torch.allclose(back.embed_text(TEXTS), model.embed_text(TEXTS), atol=1e-6)


def test_set_trainable_counts_and_one_step_changes_exactly_the_trainable_tensors(loaded):
    family, spec = loaded[0], loaded[1]
    model = _load(spec, family)[0]  # a fresh copy (msclap's HTSAT holds a module: no deepcopy)
    n_train, n_total = model.set_trainable(None)  # the family's default TeminAL subset
    params = dict(model.named_parameters())
    names = model.trainable_names()
    assert 0 < n_train < n_total
    assert n_total == sum(p.numel() for p in model.parameters())
    # trainable_names are relative to the family's own module (laion: clap., hf: hf., ...)
    trainable = {k: p for k, p in params.items() if p.requires_grad}
    assert n_train == sum(p.numel() for p in trainable.values()) and len(names) == len(trainable)
    before = {k: v.detach().clone() for k, v in params.items()}
    optimizer = torch.optim.Adam([p for p in params.values() if p.requires_grad], lr=1e-3)
    model.train()
    audio, text = model(audio=_waves(model, n=3), text_tokens=model.tokenize(TEXTS))
    logits = model.logit_scale() * audio @ text.T
    target = torch.arange(3)
    loss = 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))
    loss.backward()
    optimizer.step()
    changed = {k for k, v in params.items() if not torch.equal(v.detach(), before[k])}
    assert changed == set(trainable), (sorted(set(trainable) - changed)[:5],
                                       sorted(changed - set(trainable))[:5])


@pytest.mark.parametrize("double", ["FakeModel", "RandomModel", "OracleModel", "CaptionModel",
                                    "ToyClap"])
def test_every_test_double_implements_the_whole_interface(double, tmp_path):
    """teminal.testing's doubles stand in for a model anywhere one is used, so no caller needs
    to probe for an attribute: the whole protocol, a head refused by the interface."""
    import teminal.testing as doubles
    from teminal.testing import SAMPLE_RATE, VOCAB, WAVE_LEN, encode

    made = {"FakeModel": lambda: doubles.FakeModel(),
            "RandomModel": lambda: doubles.RandomModel(),
            "OracleModel": lambda: doubles.OracleModel(VOCAB, SAMPLE_RATE, {}),
            "CaptionModel": lambda: doubles.CaptionModel(SAMPLE_RATE, {}, {}, 3, WAVE_LEN),
            "ToyClap": lambda: doubles.ToyClap()}[double]()
    assert isinstance(made, AudioTextModel)
    assert made.supports_audio_head is False
    with pytest.raises(ValueError, match="no order-aware audio head"):
        made.add_audio_head("additive")
    assert isinstance(made.family, str) and made.weights_sha256 == "random-init"
    assert made.device == torch.device("cpu")
    assert 0 < made.logit_scale().detach().item() <= 100
    n_train, n_total = made.set_trainable(None)
    assert set(made.trainable_names()) <= set(made.named_weights()) and n_train <= n_total
    made.eval()
    assert made.training is False
    if double in ("RandomModel", "ToyClap"):  # the doubles that read any audio and text
        audio = torch.from_numpy(encode("single", 1)).repeat(2, 500)[:, :32000]
        a, t = made(audio=audio, text_tokens=made.tokenize(["a dog", "rain"]),
                    sample_rate=SAMPLE_RATE)
        assert a.shape == (2, made.embed_dim) and t.shape == (2, made.embed_dim)
    folder = made.save(tmp_path / "ckpt", TrainingProvenance(stage="test"))
    assert json.loads((folder / "config.json").read_text())["extra"]["stage"] == "test"
