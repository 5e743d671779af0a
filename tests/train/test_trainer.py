"""The shared loop on the toy model (milliseconds per step): learning, run-folder layout,
kill-and-resume equivalence, the NaN stop, selection, refusing to overwrite a run."""
from __future__ import annotations

import json

import pytest
import torch

from teminal.train.run_config import TrainConfig
from teminal.train.streaming import canonical_caption
from teminal.train.trainer import NonFiniteLoss, Stage, complete_checkpoints, run
from teminal.testing import toy_factory
from toy_clap import reference_info_nce, weights

RELATIONS = ("forward", "reversed", "overlay")


class Loss:
    """InfoNCE over [forward; reversed; overlay]; `fail_at` makes call k raise or return NaN."""

    def __init__(self, fail_at: int | None = None, nan: bool = False):
        self.calls, self.fail_at, self.nan, self.sizes = 0, fail_at, nan, []

    def __call__(self, audio, text, scale, n_groups, cfg, positives=None):
        self.calls += 1
        self.sizes.append((audio.shape[0], n_groups))
        loss = reference_info_nce(audio, text, scale)
        if self.calls == self.fail_at:
            if self.nan:
                return loss * float("nan")
            raise KeyboardInterrupt("simulated kill")
        return loss


def stage(loss=None, caption=canonical_caption) -> Stage:
    return Stage("toy_b", "b", RELATIONS, loss or Loss(), caption)


def config(data, out, **kw) -> TrainConfig:
    base = dict(data=str(data), out=str(out), max_steps=12, groups_per_batch=4, num_workers=0,
                lr=3e-3, save_every=4, log_every=1, tensorboard=False, progress=False, seed=1)
    return TrainConfig(**{**base, **kw})


def metrics(run_dir) -> list[dict]:
    return [json.loads(ln) for ln in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_loss_goes_down_and_the_run_folder_is_complete(tiny_data, tmp_path):
    out = tmp_path / "run"
    result = run(config(tiny_data, out, max_steps=40, save_every=20, log_every=5,
                        tensorboard=True), stage(), toy_factory)
    rows = metrics(out)
    assert [r["step"] for r in rows] == [1, 5, 10, 15, 20, 25, 30, 35, 40]
    assert {"loss", "lr", "samples_per_s", "epoch", "data_wait"} <= set(rows[0])
    first, last = rows[0]["loss"], sum(r["loss"] for r in rows[-3:]) / 3
    assert last < first - 0.3, (first, last)
    assert rows[-1]["epoch"] == pytest.approx(40 / 6)  # 24 groups / 4 per step
    assert rows[-1]["lr"] == pytest.approx(3e-3 * 0.95 ** 6)
    assert [p.name for p in complete_checkpoints(out)] == ["step-20", "step-40"]
    cfg = json.loads((out / "final" / "config.json").read_text())["extra"]
    assert cfg["stage"] == "toy_b" and cfg["synthetic"] is True and cfg["build_id"]
    assert cfg["train_config"]["groups_per_batch"] == 4 and cfg["steps"] == 40
    assert (out / "final" / "model.safetensors").exists()
    assert list((out / "tb").rglob("events.out.tfevents*")), "no TensorBoard log"
    assert result.steps == 40 and result.final_loss < result.first_loss
    assert json.loads((out / "summary.json").read_text())["steps"] == 40


@pytest.mark.parametrize("workers,accum", [(0, 1), (2, 2)])
def test_killed_and_resumed_run_ends_with_the_same_weights(tiny_data, tmp_path, workers, accum):
    kw = dict(num_workers=workers, grad_accum=accum, groups_per_batch=3)
    run(config(tiny_data, tmp_path / "whole", **kw), stage(), toy_factory)

    broken = tmp_path / "broken"
    with pytest.raises(KeyboardInterrupt):  # dies in step 7, after the step-4 checkpoint
        run(config(tiny_data, broken, **kw), stage(Loss(fail_at=6 * accum + 1)), toy_factory)
    assert [p.name for p in complete_checkpoints(broken)] == ["step-4"]
    run(config(tiny_data, broken, resume=True, **kw), stage(), toy_factory)

    a, b = weights(tmp_path / "whole" / "final"), weights(broken / "final")
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=1e-5, atol=1e-6, msg=name)
    steps = [r["step"] for r in metrics(broken)]
    assert steps == list(range(1, 13))
    assert [r["loss"] for r in metrics(broken)] == pytest.approx(
        [r["loss"] for r in metrics(tmp_path / "whole")], rel=1e-5)


def test_weight_averaging_exports_the_mean_of_the_snapshots_and_checkpoints_stay_raw(
        tiny_data, tmp_path):
    """--average-from 6 --average-every 3 over 12 steps: the export is the mean of the weights
    after steps 6, 9 and 12, which the kept checkpoints hold; frozen weights do not move."""
    from safetensors.torch import load_file

    out = tmp_path / "run"
    run(config(tiny_data, out, save_every=3, keep_checkpoints=10, average_from=6,
               average_every=3, trainable=["audio_proj.*", "text_proj.*"]), stage(), toy_factory)
    snaps = [load_file(str(out / "checkpoints" / f"step-{s}" / "model.safetensors"))
             for s in (6, 9, 12)]
    exported = load_file(str(out / "final" / "model.safetensors"))
    for name in ("audio_proj.0.weight", "text_proj.bias"):
        mean = sum(s[f"model.{name}"].double() for s in snaps) / 3
        torch.testing.assert_close(exported[name], mean.float(), rtol=0, atol=0, msg=name)
        assert not torch.equal(exported[name], snaps[-1][f"model.{name}"])  # not the last step
    assert torch.equal(exported["words.weight"], snaps[0]["model.words.weight"])  # frozen


def test_a_resumed_run_averages_the_same_snapshots_as_an_unbroken_one(tiny_data, tmp_path):
    kw = dict(average_from=3, average_every=2)     # snapshots 3, 5, 7, 9, 11
    run(config(tiny_data, tmp_path / "whole", **kw), stage(), toy_factory)
    broken = tmp_path / "broken"
    with pytest.raises(KeyboardInterrupt):          # dies in step 7, after the step-4 checkpoint
        run(config(tiny_data, broken, **kw), stage(Loss(fail_at=7)), toy_factory)
    run(config(tiny_data, broken, resume=True, **kw), stage(), toy_factory)
    a, b = weights(tmp_path / "whole" / "final"), weights(broken / "final")
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=1e-5, atol=1e-6, msg=name)


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tiny_data, tmp_path):
    out = tmp_path / "run"
    with pytest.raises(NonFiniteLoss, match=r"nan at step 7.*step-6"):
        run(config(tiny_data, out, save_every=2, keep_checkpoints=2),
            stage(Loss(fail_at=7, nan=True)), toy_factory)
    assert [p.name for p in complete_checkpoints(out)] == ["step-4", "step-6"]
    assert not (out / "final").exists()
    good = weights_of_checkpoint(out / "checkpoints" / "step-6")
    assert all(torch.isfinite(v).all() for v in good.values())
    run(config(tiny_data, out, resume=True, max_steps=8, save_every=2), stage(), toy_factory)
    assert metrics(out)[-1]["step"] == 8


def weights_of_checkpoint(path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(path / "model.safetensors"))


def test_where_restricts_the_training_groups(tiny_data, tmp_path):
    label = "low hum"
    seen = []

    def caption(rows, relation, rng):
        assert any(label in r["labels"] for r in rows), rows[0]["group_key"]
        seen.append(rows[0]["group_key"])
        return canonical_caption(rows, relation, rng)

    run(config(tiny_data, tmp_path / "run", max_steps=4, groups_per_batch=2,
               where=f"list_contains(labels, '{label}')"), stage(caption=caption), toy_factory)
    assert len(seen) == 4 * 2 * 3


def test_an_existing_run_is_not_overwritten(tiny_data, tmp_path):
    run(config(tiny_data, tmp_path / "run", max_steps=2), stage(), toy_factory)
    with pytest.raises(FileExistsError, match="--resume"):
        run(config(tiny_data, tmp_path / "run", max_steps=2), stage(), toy_factory)
    # resuming a finished run at its last step does nothing and keeps the model
    result = run(config(tiny_data, tmp_path / "run", max_steps=2, resume=True), stage(),
                 toy_factory)
    assert result.steps == 2


def test_init_from_a_checkpoint(tiny_data, tmp_path):
    run(config(tiny_data, tmp_path / "a", max_steps=3), stage(), toy_factory)
    loss = Loss()
    run(config(tiny_data, tmp_path / "b", max_steps=1, init=str(tmp_path / "a")), stage(loss),
        toy_factory)
    cfg = json.loads((tmp_path / "b" / "final" / "config.json").read_text())["extra"]
    assert cfg["init"] == str(tmp_path / "a" / "final")
    with pytest.raises(FileNotFoundError, match="(?s)nowhere.*no such folder"):
        run(config(tiny_data, tmp_path / "c", init=str(tmp_path / "nowhere")), stage(),
            toy_factory)


def test_the_optimiser_is_adam_with_the_fused_kernel_and_the_same_updates():
    """The trainer's Adam uses torch's fused kernel on CPU (the default per-tensor loop was a
    third of a pretraining step); 30 steps land where plain Adam lands, to float rounding."""
    from teminal.train.trainer import adam

    torch.manual_seed(0)
    plain = [torch.nn.Parameter(torch.randn(300, 17)), torch.nn.Parameter(torch.randn(5))]
    fused = [torch.nn.Parameter(p.detach().clone()) for p in plain]
    reference = torch.optim.Adam(plain, lr=1e-2, weight_decay=0.01)
    ours = adam(fused, 1e-2, 0.01)
    assert ours.defaults["fused"] is True
    for _ in range(30):
        grads = [torch.randn_like(p) for p in plain]
        for p, q, g in zip(plain, fused, grads):
            p.grad, q.grad = g.clone(), g.clone()
        reference.step()
        ours.step()
    for p, q in zip(plain, fused):
        torch.testing.assert_close(q, p, rtol=0, atol=1e-5)


def test_the_temperature_moves_at_its_own_learning_rate_when_asked(tiny_data, tmp_path):
    """Adam moves a parameter by about lr per step, so a short run's temperature barely moves
    (the small model's stayed at 14.3): --logit-scale-lr-mult gives it a rate of its own."""
    from teminal.testing import toy_factory as make
    from teminal.train.trainer import param_groups

    groups = param_groups(make("toy", "cpu"), 30.0)
    assert [g["lr_mult"] for g in groups] == [1.0, 30.0] and len(groups[1]["params"]) == 1
    assert len(param_groups(make("toy", "cpu"))) == 1

    def trained(out, mult):
        run(config(tiny_data, out, max_steps=6, lr=1e-3, logit_scale_lr_mult=mult), stage(),
            toy_factory)
        from safetensors.torch import load_file
        return load_file(str(out / "final" / "model.safetensors"))

    start = float(make("toy", "cpu").logit_scale_a.detach())
    plain, fast = trained(tmp_path / "plain", 1.0), trained(tmp_path / "fast", 30.0)
    moved = lambda w: abs(float(w["logit_scale_a"]) - start)  # noqa: E731
    assert moved(plain) <= 6 * 1e-3 + 1e-6          # about lr per step at most
    assert moved(fast) > 10 * moved(plain) > 0


def test_lr_mult_groups_parameters_by_the_first_matching_pattern_under_trainable_names():
    """--lr-mult sees the names --trainable sees: the small model's laion names and its head's
    `audio_head.*` (the adapter's named_weights, not torch's `clap.`-prefixed ones)."""
    from teminal.models import load_model
    from teminal.train.trainer import param_groups

    model = load_model("small")
    model.add_audio_head("additive_contrast")
    model.set_trainable(["audio_head.*", "text_branch.resblocks.1.*", "text_projection.*",
                         "logit_scale_a"])
    groups = param_groups(model, 1.0, ["text_branch.*=0.3", "audio_head.*=2", "text_*=5"])
    names = {id(p): n for n, p in model.named_weights().items()}
    by_mult = {g["lr_mult"]: sorted(names[id(p)] for p in g["params"]) for g in groups}
    assert groups[0]["lr_mult"] == 1.0 and sorted(by_mult) == [0.3, 1.0, 2.0, 5.0]
    assert by_mult[1.0] == ["logit_scale_a"]
    assert by_mult[0.3] and all(n.startswith("text_branch.resblocks.1.") for n in by_mult[0.3])
    assert by_mult[2.0] and all(n.startswith("audio_head.") for n in by_mult[2.0])
    assert by_mult[5.0] and all(n.startswith("text_projection.") for n in by_mult[5.0])
    assert sum(len(v) for v in by_mult.values()) == len(model.trainable_names())
    with pytest.raises(ValueError, match=r"--lr-mult \['text_brnch.\*=0.3'\] match\(es\) no trainable"):
        param_groups(model, 1.0, ["text_branch.*=0.5", "text_brnch.*=0.3"])  # a typo


def test_a_zero_lr_mult_leaves_those_parameters_where_they_were(tiny_data, tmp_path):
    from safetensors.torch import load_file

    torch.manual_seed(1)  # the trainer seeds with cfg.seed (1) before it builds the model
    start = {k: v.clone() for k, v in toy_factory("toy", "cpu").state_dict().items()}
    run(config(tiny_data, tmp_path / "run", max_steps=4, lr_mult=["text_proj.*=0"]), stage(),
        toy_factory)
    end = load_file(str(tmp_path / "run" / "final" / "model.safetensors"))
    torch.testing.assert_close(end["text_proj.weight"], start["text_proj.weight"], rtol=0, atol=0)
    assert not torch.equal(end["audio_proj.0.weight"], start["audio_proj.0.weight"])


def test_a_run_from_before_a_setting_existed_resumes_with_its_default(tiny_data, tmp_path):
    import yaml

    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        run(config(tiny_data, out, max_steps=8), stage(Loss(fail_at=6)), toy_factory)
    old = yaml.safe_load((out / "run_config.yaml").read_text())
    del old["logit_scale_lr_mult"]                   # written by an earlier teminal
    (out / "run_config.yaml").write_text(yaml.safe_dump(old))
    result = run(config(tiny_data, out, max_steps=8, resume=True), stage(), toy_factory)
    assert result.steps == 8


def test_the_learning_rate_warms_up_linearly_then_steps_down_per_epoch():
    from teminal.train.trainer import lr_at

    cfg = TrainConfig(lr=1e-3, lr_gamma=0.5, warmup_steps=4)
    assert [lr_at(s, cfg, 10) for s in range(5)] == pytest.approx([2.5e-4, 5e-4, 7.5e-4, 1e-3, 1e-3])
    assert lr_at(10, cfg, 10) == pytest.approx(5e-4)
    assert lr_at(3, TrainConfig(lr=1e-3), 10) == 1e-3            # no warm-up by default
