"""Audio-text retrieval: hand-made items with variable captions, real Clotho/AudioCaps layouts."""
from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner

from teminal.testing import CaptionModel, RandomModel, wave_key
from teminal.evaluate import retrieval as R
from teminal.evaluate.embed import windows
from teminal.evaluate.report import validate_result

SR = 8000
CLIP = 2 * SR


def _items(tmp_path):
    """4 clips (one 5 s long, longer than the model input) with 1, 2, 3 and 5 captions."""
    rng = np.random.default_rng(0)
    items = []
    for i, (seconds, n_caps) in enumerate([(1.0, 1), (2.0, 2), (5.0, 3), (1.5, 5)]):
        path = tmp_path / f"clip {i}.wav"
        sf.write(path, (0.3 * rng.standard_normal(int(seconds * SR))).astype(np.float32), SR,
                 subtype="PCM_16")
        items.append((f"clip-{i}", str(path), tuple(f"caption {j} of clip {i}" for j in range(n_caps))))
    return items


def _oracle(items):
    from teminal.pipeline.audio import load_source

    audio = {}
    for i, (_sid, path, _caps) in enumerate(items):
        for w in windows(load_source(path, SR), CLIP, R.FILL):
            audio[wave_key(w)] = i
    captions = {c: i for i, (_s, _p, caps) in enumerate(items) for c in caps}
    return CaptionModel(SR, audio, captions, len(items), CLIP)


def test_caption_index_variable_counts():
    captions, owner = R.caption_index([("a", "", ("x",)), ("b", "", ("y", "z"))])
    assert captions == ["x", "y", "z"] and owner.tolist() == [0, 1, 1]


def test_perfect_retrieval_on_hand_made_items(tmp_path):
    items = _items(tmp_path)
    out = R.evaluate_retrieval(_oracle(items), items, batch_size=3, progress=False)
    m = out["metrics"]
    for direction in ("text_to_audio", "audio_to_text"):
        assert m[direction]["R@1"] == 1.0 and m[direction]["mAP@10"] == 1.0, direction
    assert m["text_to_audio"]["n"] == 11 and m["audio_to_text"]["n"] == 4
    assert out["items"]["captions_per_clip"] == {"min": 1, "max": 5}
    assert out["timing"]["audio_clips"] == 1 + 1 + 3 + 1      # the 5 s clip is 3 windows of 2 s


def test_undecodable_clip_is_counted_not_fatal(tmp_path):
    items = _items(tmp_path)
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF0000WAVEjunk")
    items.append(("clip-broken", str(broken), ("a caption",)))
    out = R.evaluate_retrieval(_oracle(items[:-1]), items, progress=False)
    assert out["items"]["evaluated"] == 4 and sum(out["items"]["decode_failed"].values()) == 1


def test_windows_cover_long_clips():
    x = np.arange(25, dtype=np.float32)
    parts = windows(x, 10)
    assert [int(p[0]) for p in parts] == [0, 10, 15] and all(len(p) == 10 for p in parts)
    assert len(windows(np.ones(4, np.float32), 10)) == 1


@pytest.mark.realdata
def test_real_clotho_evaluation_clips(shared_data, tmp_path, monkeypatch):
    """Clotho v1: 1045 evaluation clips listed, 7 with audio; 5 captions each."""
    from teminal.evaluate import cli

    model = RandomModel(sample_rate=SR, clip_samples=10 * SR)
    r = R.run(model, "small", "clotho", shared_data / "clotho", progress=False)
    assert validate_result(r) == []
    assert r["items"]["found"] == 7 and r["items"]["listed"] == 1045
    assert r["items"]["missing"] == 1038 and r["items"]["captions"] == 35
    assert 0 <= r["metrics"]["audio_to_text"]["R@10"] <= 1
    monkeypatch.setattr(cli, "_load_model", lambda spec, device, seed: model)
    res = CliRunner().invoke(cli.main, ["retrieval", "--model", "small", "--dataset", "clotho",
                                        "--root", str(shared_data / "clotho"), "--out",
                                        str(tmp_path / "r.json"), "--quiet"])
    assert res.exit_code == 0, res.output


@pytest.mark.realdata
def test_real_audiocaps_without_audio_says_so(shared_data):
    with pytest.raises(ValueError, match="no clip with audio found"):
        R.run(RandomModel(sample_rate=SR), "small", "audiocaps", shared_data / "audiocaps",
              progress=False)


def test_decode_workers_give_the_serial_numbers(tmp_path):
    """A clip that fails to decode in a worker is counted as in the serial path."""
    items = _items(tmp_path)
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF0000WAVEjunk")
    items.insert(1, ("clip-broken", str(broken), ("a caption",)))
    results = [R.evaluate_retrieval(RandomModel(sample_rate=SR, clip_samples=CLIP), items,
                                    batch_size=2, progress=False, workers=w) for w in (0, 2)]
    assert json.dumps(results[0]["metrics"]) == json.dumps(results[1]["metrics"])
    assert results[0]["items"] == results[1]["items"]
    assert results[1]["items"]["decode_failed"] == results[0]["items"]["decode_failed"] != {}
    assert results[1]["timing"]["decode"]["clips"] == 4
