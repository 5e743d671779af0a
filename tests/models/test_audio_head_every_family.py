"""The order-aware audio head on the hf and msclap families (tiny random weights), with the
guarantees it has on laion's (tests/models/test_audio_head.py): a fresh head is exactly the
pooled model, it saves and reloads bit for bit, `--trainable` patterns select it, and its
"frames" tokens are the tower's own frame-level features, in time order."""
from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from teminal.models import ModelFilesNotFound, ModelSpecError, TrainingProvenance, load_model
from teminal.models.heads import PRESETS, frame_tokens

FRAMES = {"source": "frames", "tokens": 4, "layers": 0, "moment": True, "contrast": True,
          "positional": False}  # moment_contrast over the tower's frames
HEADS = {**{name: name for name in PRESETS}, "frames": FRAMES}


@pytest.fixture(params=["hf", "msclap-2023"])
def family_spec(request, tiny_hf_dir, tiny_msclap) -> tuple[str, str]:
    if request.param == "hf":
        return "hf", f"hf:{tiny_hf_dir}"
    path, tok = tiny_msclap("2023")
    return "msclap", f"msclap:{path}?version=2023&text={tok}"


def _waves(model, n=2, seed=0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return 0.1 * torch.randn(n, model.clip_samples, generator=g)


def _perturb(head) -> None:
    """As if trained: the zero-initialised output layers are no longer 0."""
    with torch.no_grad():
        for p in head.parameters():
            p.add_(torch.randn_like(p) * 0.05)


@pytest.mark.parametrize("head", sorted(HEADS))
def test_a_fresh_head_gives_exactly_the_pooled_embedding(family_spec, head):
    model = load_model(family_spec[1])
    waves = _waves(model)
    with torch.no_grad():
        before = model.embed_audio(waves, model.sample_rate)
        assert model.supports_audio_head and model.add_audio_head(HEADS[head]) is True
        after = model.embed_audio(waves, model.sample_rate)
    assert torch.equal(before, after)
    assert model.config["audio_head"]["type"] == "temporal"


def test_frame_tokens_follow_time_and_average_to_the_pooled_features(family_spec):
    """A burst in quarter q of an otherwise quiet clip moves frame token q most; the frames are
    the tensor the pooled embedding averages (HTSAT: latent_output)."""
    model = load_model(family_spec[1])
    n = model.clip_samples
    g = torch.Generator().manual_seed(1)
    quiet = 0.001 * torch.randn(1, n, generator=g)
    bursts = quiet.repeat(4, 1)
    for q in range(4):
        bursts[q, q * n // 4:(q + 1) * n // 4] += 0.3 * torch.randn(n // 4, generator=g)
    with torch.no_grad():
        pooled, frames = model._audio_pooled(model.prepare_audio(torch.cat([quiet, bursts])),
                                             True)
    assert frames.shape[0] == 5 and frames.shape[1] >= 4 and frames.shape[2] == pooled.shape[1]
    assert torch.allclose(frames.mean(1), pooled, atol=1e-5)
    tokens = frame_tokens(frames, 4)
    moved = (tokens[1:] - tokens[:1]).norm(dim=-1)  # [burst q, token k]
    assert moved.argmax(dim=1).tolist() == [0, 1, 2, 3], moved


@pytest.mark.parametrize("head", ["moment_contrast", "frames"])
def test_a_trained_head_saves_and_reloads_with_identical_embeddings(family_spec, tmp_path,
                                                                    head):
    family, spec = family_spec
    model = load_model(spec)
    model.add_audio_head(HEADS[head])
    _perturb(model.audio_head)
    waves = _waves(model)
    with torch.no_grad():
        trained = model.embed_audio(waves, model.sample_rate)
        pooled = load_model(spec).embed_audio(waves, model.sample_rate)
    assert not torch.allclose(trained, pooled)
    folder = model.save(tmp_path / "ckpt", TrainingProvenance(stage="stage_a"))
    back = load_model(str(folder))
    assert back.family == family and back.config["audio_head"] == model.config["audio_head"]
    with torch.no_grad():
        assert torch.equal(back.embed_audio(waves, model.sample_rate), trained)


def test_the_head_is_in_the_default_subset_and_selectable_by_pattern(family_spec):
    model = load_model(family_spec[1])
    model.add_audio_head("moment_contrast")
    model.set_trainable(None)
    names = model.trainable_names()
    assert any(n.startswith("audio_head.") for n in names)
    assert any(not n.startswith("audio_head.") for n in names)  # the family's own subset too
    model.set_trainable(["audio_head.*"])
    assert {n.split(".")[0] for n in model.trainable_names()} == {"audio_head"}
    model.set_trainable(["default"])
    assert any(n.startswith("audio_head.") for n in model.trainable_names())


def test_an_hf_export_keeps_the_plain_transformers_folder_and_reloads_the_head_beside_it(
        tiny_hf_dir, tmp_path):
    from transformers import ClapModel

    model = load_model(f"hf:{tiny_hf_dir}")
    model.add_audio_head("moment_contrast")
    _perturb(model.audio_head)
    folder = model.save(tmp_path / "ckpt")
    plain = ClapModel.from_pretrained(str(folder / "hf"), local_files_only=True)
    assert all(torch.equal(v, dict(plain.named_parameters())[k])
               for k, v in model.hf.named_parameters())
    assert (folder / "audio_head.safetensors").is_file()
    (folder / "audio_head.safetensors").unlink()
    with pytest.raises(ModelFilesNotFound, match="audio_head.safetensors"):
        load_model(str(folder))


def test_msclap_weights_and_a_config_without_the_head_are_named(tiny_msclap, tmp_path):
    path, tok = tiny_msclap("2023")
    model = load_model(f"msclap:{path}?version=2023&text={tok}")
    model.add_audio_head("moment_contrast")
    folder = model.save(tmp_path / "ckpt")
    config = json.loads((folder / "config.json").read_text())
    del config["audio_head"]
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelSpecError, match="audio_head"):
        load_model(str(folder))


def test_cnn14_frames_follow_time_and_a_fresh_head_changes_nothing(tiny_msclap):
    """msclap 2022's CNN14 (its real size: a few seconds per pass): its frames are conv_block6's
    output through fc1 frame by frame, in time order."""
    path, tok = tiny_msclap("2022")
    model = load_model(f"msclap:{path}?version=2022&text={tok}")
    n = model.clip_samples
    g = torch.Generator().manual_seed(1)
    clips = 0.001 * torch.randn(1, n, generator=g).repeat(3, 1)
    clips[1, :n // 4] += 0.3 * torch.randn(n // 4, generator=g)     # a burst first
    clips[2, -(n // 4):] += 0.3 * torch.randn(n // 4, generator=g)  # a burst last
    with torch.no_grad():
        pooled, frames = model._audio_pooled(model.prepare_audio(clips), True)
        model.add_audio_head(FRAMES)
        after = model.embed_audio(clips, model.sample_rate)
    assert torch.equal(after, F.normalize(model._project_audio(pooled), dim=-1))
    moved = (frame_tokens(frames, 4)[1:] - frame_tokens(frames, 4)[:1]).norm(dim=-1)
    assert moved.argmax(dim=1).tolist() == [0, 3], moved
