"""Family hf: a transformers ClapModel from a save_pretrained folder. Only tiny random weights
are available offline; they check the wiring against transformers' own feature extractor and
get_*_features, not the quality of any released model."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from teminal.models import ModelFilesNotFound, ModelSpecError, TrainingProvenance, load_model

# float32 torch features vs the extractor's float64 numpy ones differ by < 1e-3 dB; after the
# tiny model the unit-norm embeddings agree to about 1e-7 (measured): 1e-5 leaves room for BLAS.
EMBED_ATOL = 1e-5


@pytest.fixture(scope="module")
def pair(tiny_hf_dir):
    from transformers import ClapModel, ClapProcessor

    ours = load_model(f"hf:{tiny_hf_dir}")
    ref = ClapModel.from_pretrained(str(tiny_hf_dir), local_files_only=True).eval()
    proc = ClapProcessor.from_pretrained(str(tiny_hf_dir), local_files_only=True)
    return ours, ref, proc


def _pooled(out):
    return out if isinstance(out, torch.Tensor) else out.pooler_output


def test_embeddings_equal_transformers_get_features_on_clap_processor_input(pair):
    ours, ref, proc = pair
    assert (ours.family, ours.sample_rate, ours.clip_samples) == ("hf", 48000, 480000)
    g = torch.Generator().manual_seed(0)
    # a short clip (repeat-padded by both) and one of exactly 10 s
    waves = [0.1 * torch.randn(48000 * 3, generator=g), 0.1 * torch.randn(480000, generator=g)]
    texts = ["a dog barks", "dog before siren", "rain"]
    with torch.no_grad():
        for w in waves:
            inputs = proc.feature_extractor(w.numpy(), sampling_rate=48000, return_tensors="pt")
            expect = _pooled(ref.get_audio_features(**inputs))
            got = ours.embed_audio(w[None], 48000)
            assert torch.allclose(got, expect, atol=EMBED_ATOL), (got - expect).abs().max()
            feats = ours.features(ours.prepare_audio(w[None]))
            assert torch.allclose(feats, inputs["input_features"].float(), atol=1e-2)
        tok = proc.tokenizer(texts, padding=True, return_tensors="pt")
        expect = _pooled(ref.get_text_features(**tok))
        assert torch.allclose(ours.embed_text(texts), expect, atol=EMBED_ATOL)


def test_default_subset_is_last_text_layer_pooler_projections_and_last_audio_stage(pair):
    ours = pair[0]
    import copy

    model = copy.deepcopy(ours)
    n_train, n_total = model.set_trainable(None)
    names = model.trainable_names()
    assert 0 < n_train < n_total
    assert any(n.startswith("text_model.encoder.layer.1.") for n in names)
    assert not any(n.startswith("text_model.encoder.layer.0.") for n in names)
    assert any(n.startswith("text_model.pooler.") for n in names)
    assert any(n.startswith("audio_model.audio_encoder.layers.3.") for n in names)
    assert not any(n.startswith("audio_model.audio_encoder.layers.2.") for n in names)
    assert {"logit_scale_a"} <= set(names)
    assert any(n.startswith("audio_projection.") for n in names)
    with pytest.raises(ValueError, match="match no parameter"):
        model.set_trainable(["audio_branch.*"])  # a laion name: HF names differ


def test_fusion_checkpoint_is_refused_with_a_clear_message(tiny_hf_dir, tmp_path):
    fused = tmp_path / "fused"
    shutil.copytree(tiny_hf_dir, fused)
    cfg = json.loads((fused / "config.json").read_text())
    cfg["audio_config"]["enable_fusion"] = True
    (fused / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ModelSpecError, match="feature-fusion"):
        load_model(f"hf:{fused}")


def test_every_missing_file_is_named_at_once(tmp_path):
    with pytest.raises(ModelFilesNotFound) as err:
        load_model(f"hf:{tmp_path}")
    text = str(err.value)
    assert "3 missing" in text and "config.json" in text and "model.safetensors" in text
    assert "tokenizer" in text and "hf download" in text


def test_a_plain_save_pretrained_folder_reads_as_hf(tiny_hf_dir):
    from teminal.models import family_of

    assert family_of(str(tiny_hf_dir)) == "hf"


def test_export_loads_with_plain_transformers_and_back_as_the_same_model(pair, tmp_path):
    from transformers import ClapModel, ClapProcessor

    ours = pair[0]
    provenance = TrainingProvenance(stage="stage_b")
    ours.save(tmp_path / "ckpt", provenance)
    plain = ClapModel.from_pretrained(str(tmp_path / "ckpt" / "hf"), local_files_only=True).eval()
    proc = ClapProcessor.from_pretrained(str(tmp_path / "ckpt" / "hf"), local_files_only=True)
    assert proc.feature_extractor.truncation == "rand_trunc"
    wave = np.random.default_rng(0).standard_normal(48000).astype(np.float32) * 0.1
    with torch.no_grad():
        inputs = proc.feature_extractor(wave, sampling_rate=48000, return_tensors="pt")
        expect = _pooled(plain.get_audio_features(**inputs))
        back = load_model(str(tmp_path / "ckpt"))
        assert back.family == "hf" and back.config["extra"] == provenance.to_dict()
        assert torch.allclose(back.embed_audio(torch.from_numpy(wave)[None], 48000), expect,
                              atol=EMBED_ATOL)


def test_an_hf_export_is_a_plain_transformers_folder_with_its_card(pair, tmp_path):
    from transformers import ClapModel, ClapProcessor

    from teminal.models.export import export

    ours = pair[0]
    out, card = export(ours, None, tmp_path / "exported")  # hf: the family's own format
    assert card == out / "README.md"
    assert "ClapModel.from_pretrained('exported')" in card.read_text()
    plain = ClapModel.from_pretrained(str(out), local_files_only=True).eval()
    proc = ClapProcessor.from_pretrained(str(out), local_files_only=True)
    wave = np.random.default_rng(1).standard_normal(48000).astype(np.float32) * 0.1
    texts = ["a dog barks", "rain"]
    with torch.no_grad():
        inputs = proc.feature_extractor(wave, sampling_rate=48000, return_tensors="pt")
        expect = _pooled(plain.get_audio_features(**inputs))
        assert torch.allclose(ours.embed_audio(torch.from_numpy(wave)[None], 48000), expect,
                              atol=EMBED_ATOL)
        expect = _pooled(plain.get_text_features(**proc.tokenizer(texts, padding=True,
                                                                   return_tensors="pt")))
        assert torch.allclose(ours.embed_text(texts), expect, atol=EMBED_ATOL)
