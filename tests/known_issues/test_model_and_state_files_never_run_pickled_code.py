"""Issue 23.1 (and 23.10's pickle under hf:): a `laion:` checkpoint holding anything but tensors
was re-read with full pickle (only a log warning), so a payload ran in `evaluate` and in
training; a resume loaded Accelerate's custom-state files with full pickle too; a pickled
`pytorch_model.bin` under `hf:` was a traceback. Every file a user can be handed now loads with
tensors-only semantics or is refused in one line naming the file and the command that converts
a trusted copy; TEMINAL_TRUST_PICKLE=1 is the one opt-in for model files."""
from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from teminal.models import TrainingProvenance, load_model
from teminal.models.tensor_files import TRUST_ENV, PickledObjects, load_tensors
from teminal.testing import (toy_factory, write_fake_gpt2_tokenizer,
                                    write_fake_roberta_tokenizer)
from teminal.train.run_config import TrainConfig
from teminal.train.streaming import canonical_caption
from teminal.train.trainer import Stage, complete_checkpoints, run
from toy_clap import reference_info_nce


class Payload:
    """Unpickling it writes `marker`: the test fails if that file ever appears."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return exec, (f"open({self.marker!r}, 'w').write('ran')",)


def _with_payload(state: dict, where: str, marker: Path):
    """A checkpoint object carrying the payload at `where`."""
    if where == "top-level entry":
        return {**state, "extra": Payload(marker)}
    if where == "inside the weights":
        return {**state, "state_dict": {**state.get("state_dict", {}), "w": Payload(marker)}}
    return Payload(marker)  # the whole file


WHERE = ["top-level entry", "inside the weights", "the whole file"]


@pytest.fixture
def marker(tmp_path) -> Path:
    path = tmp_path / "PAYLOAD-RAN"
    yield path
    assert not path.exists(), "the pickled payload ran"


@pytest.mark.parametrize("where", WHERE)
def test_a_laion_checkpoint_with_a_payload_is_refused_naming_the_fix(tmp_path, marker, where):
    ckpt = tmp_path / "630k-audioset-best.pt"
    torch.save(_with_payload({"epoch": 3, "state_dict": {"w": torch.ones(2)}}, where, marker),
               ckpt)
    tok = write_fake_roberta_tokenizer(tmp_path / "tok")
    with pytest.raises(PickledObjects, match=rf"{ckpt} holds pickled Python objects.*"
                                             rf"python -m teminal.models.convert {ckpt}"):
        load_model(f"laion:{ckpt}?text={tok}")


@pytest.mark.parametrize("where", WHERE)
def test_an_msclap_file_with_a_payload_is_refused(tmp_path, marker, where):
    weights = tmp_path / "CLAP_weights_2023.pth"
    torch.save(_with_payload({"model": {"w": torch.ones(2)}}, where, marker), weights)
    tok = write_fake_gpt2_tokenizer(tmp_path / "tok")
    with pytest.raises(PickledObjects, match=f"{weights} holds pickled Python objects"):
        load_model(f"msclap:{weights}?version=2023&text={tok}")


def _hf_with_bin(tiny_hf_dir, folder: Path, obj=None) -> Path:
    """The tiny hf model's folder with its weights as pytorch_model.bin (`obj`: other content)."""
    from safetensors.torch import load_file

    shutil.copytree(tiny_hf_dir, folder)
    state = load_file(str(folder / "model.safetensors"))
    (folder / "model.safetensors").unlink()
    torch.save(state if obj is None else obj(state), folder / "pytorch_model.bin")
    return folder


@pytest.mark.parametrize("where", ["top-level entry", "the whole file"])
def test_an_hf_pytorch_model_bin_with_a_payload_is_refused_not_a_traceback(
        tiny_hf_dir, tmp_path, marker, where):
    folder = _hf_with_bin(tiny_hf_dir, tmp_path / "hf",
                          lambda state: _with_payload(state, where, marker))
    with pytest.raises(PickledObjects, match=rf"pytorch_model.bin holds pickled Python objects"
                                             rf".*convert .* {folder}/model.safetensors"):
        load_model(f"hf:{folder}")


def test_a_project_checkpoint_of_the_hf_family_with_a_pickled_bin_is_refused(
        tiny_hf_dir, tmp_path, marker):
    ckpt = tmp_path / "final"
    load_model(f"hf:{tiny_hf_dir}").save(ckpt, TrainingProvenance(stage="test"))
    (ckpt / "hf" / "model.safetensors").unlink()
    torch.save({"w": torch.ones(1), "x": Payload(marker)}, ckpt / "hf" / "pytorch_model.bin")
    with pytest.raises(PickledObjects, match="pytorch_model.bin holds pickled"):
        load_model(str(ckpt))


def test_evaluate_refuses_a_payload_checkpoint_in_one_line(tmp_path, marker):
    from click.testing import CliRunner

    from teminal.evaluate.cli import main

    ckpt = tmp_path / "x.pt"
    torch.save({"state_dict": {"w": torch.ones(1)}, "x": Payload(marker)}, ckpt)
    tok = write_fake_roberta_tokenizer(tmp_path / "tok")
    result = CliRunner().invoke(main, ["zste", "--model", f"laion:{ckpt}?text={tok}", "--data",
                                       str(tmp_path), "--out", str(tmp_path / "r.json")])
    assert result.exit_code == 1 and "holds pickled Python objects" in result.output
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1


# Clean files still load; the opt-in and the converter work.

def test_a_laion_file_with_numpy_scalars_still_loads_as_released_checkpoints_do(tmp_path):
    from teminal.models.laion.checkpoint import read_state_dict

    ckpt = tmp_path / "630k.pt"
    torch.save({"epoch": np.int64(45), "best": np.float64(0.9), "name": "x",
                "state_dict": {"module.w": torch.arange(3.0)}}, ckpt)
    assert torch.equal(read_state_dict(ckpt)["w"], torch.arange(3.0))


def test_a_clean_msclap_file_still_reads(tiny_msclap):
    """(The conformance suite loads the whole model from it.)"""
    from teminal.models.msclap.checkpoint import read_state

    weights, _tok = tiny_msclap("2023")
    state = read_state(weights)
    assert state and all(isinstance(v, torch.Tensor) for v in state.values())


def test_a_clean_hf_pytorch_model_bin_still_loads_with_the_same_weights(tiny_hf_dir, tmp_path):
    folder = _hf_with_bin(tiny_hf_dir, tmp_path / "hf")
    texts = ["a dog barks"]
    torch.testing.assert_close(load_model(f"hf:{folder}").embed_text(texts),
                               load_model(f"hf:{tiny_hf_dir}").embed_text(texts))


def test_trust_pickle_reads_a_model_file_with_objects(tiny_hf_dir, tmp_path, monkeypatch):
    folder = _hf_with_bin(tiny_hf_dir, tmp_path / "hf",
                          lambda state: {**state, "args": argparse.Namespace(lr=1)})
    with pytest.raises(PickledObjects, match="argparse.Namespace"):
        load_model(f"hf:{folder}")
    monkeypatch.setenv(TRUST_ENV, "1")
    texts = ["a siren"]
    torch.testing.assert_close(load_model(f"hf:{folder}").embed_text(texts),
                               load_model(f"hf:{tiny_hf_dir}").embed_text(texts))


@pytest.mark.parametrize("name,content", [
    ("x.pt", lambda: {"state_dict": {"w": torch.ones(2)}, "args": argparse.Namespace(a=1),
                      "epoch": np.int64(2)}),
    ("w.pth", lambda: {"model": {"w": torch.ones(2)}, "opt": [argparse.Namespace()]}),
    ("pytorch_model.bin", lambda: {"w": torch.ones(2), "cfg": argparse.Namespace()}),
])
def test_convert_writes_a_copy_that_loads_with_tensors_only(tmp_path, capsys, name, content):
    from teminal.models.convert import main
    from teminal.models.tensor_files import suggested_output

    source = tmp_path / name
    torch.save(content(), source)
    target = suggested_output(source)
    assert main([str(source), str(target)]) == 0
    assert "dropped" in capsys.readouterr().out
    if target.suffix == ".safetensors":
        from safetensors.torch import load_file

        assert torch.equal(load_file(str(target))["w"], torch.ones(2))
    else:
        load_tensors(target)  # no PickledObjects


# Resume state: Accelerate's files and the project's own.

def loss(audio, text, scale, n_groups, cfg, positives=None):
    return reference_info_nce(audio, text, scale)


STAGE = Stage("toy_b", "b", ("forward", "reversed", "overlay"), loss, canonical_caption)


def config(data, out, **kw) -> TrainConfig:
    base = dict(data=str(data), out=str(out), max_steps=2, groups_per_batch=2, num_workers=0,
                save_every=1, log_every=1, tensorboard=False, progress=False, seed=1)
    return TrainConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def trained(tiny_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "run"
    run(config(tiny_data, out, average_from=1, average_every=1), STAGE, toy_factory)
    return out


def test_a_checkpoint_holds_no_pickled_custom_state(trained):
    names = {p.name for p in complete_checkpoints(trained)[-1].iterdir()}
    assert {"progress.json", "average.safetensors", "model.safetensors"} <= names
    assert not any(n.startswith("custom_checkpoint") for n in names)


@pytest.mark.parametrize("victim", ["optimizer.bin", "random_states_0.pkl",
                                    "custom_checkpoint_0.pkl"])
def test_a_resume_never_unpickles_a_payload_in_the_checkpoint(tiny_data, trained, tmp_path,
                                                               marker, victim, monkeypatch):
    monkeypatch.setenv(TRUST_ENV, "1")  # the opt-in covers model files, never resume state
    out = shutil.copytree(trained, tmp_path / "run")
    path = complete_checkpoints(out)[-1]
    torch.save({"state": {}, "x": Payload(marker)}, path / victim)
    with pytest.raises(PickledObjects, match=rf"{path / victim} holds pickled Python objects"):
        run(config(tiny_data, out, average_from=1, average_every=1, resume=True, max_steps=3),
            STAGE, toy_factory)


def test_a_checkpoint_of_the_earlier_layout_is_converted_and_resumes(tiny_data, trained,
                                                                      tmp_path):
    """custom_checkpoint_N.pkl (Accelerate's register_for_checkpointing) is read with tensors
    only, becomes progress.json and average.safetensors, and the run continues."""
    from safetensors import safe_open

    out = shutil.copytree(trained, tmp_path / "run")
    path = complete_checkpoints(out)[-1]
    with safe_open(str(path / "average.safetensors"), framework="pt") as f:
        average = {**json.loads(f.metadata()["state"]),
                   "sums": [f.get_tensor(f"sum.{i}") for i in range(len(f.keys()))]}
    torch.save(json.loads((path / "progress.json").read_text()), path / "custom_checkpoint_0.pkl")
    torch.save(average, path / "custom_checkpoint_1.pkl")
    (path / "progress.json").unlink()
    (path / "average.safetensors").unlink()
    result = run(config(tiny_data, out, average_from=1, average_every=1, resume=True,
                        max_steps=3), STAGE, toy_factory)
    assert result.steps == 3
    assert not list(path.glob("custom_checkpoint_*"))
