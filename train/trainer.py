"""The training loop every stage shares: stream whole groups, embed, contrast, step, checkpoint.

One optimizer step = `grad_accum` micro-batches of `groups_per_batch` groups on every rank.

- Negatives span the global batch: embeddings are gathered from all ranks with
  `torch.distributed.nn.functional.all_gather`, whose backward sums the gradients of every
  rank's (identical) loss; DDP then averages over ranks, which gives exactly the gradient of
  the one global loss. The gathered rows are re-ordered so the block layout
  [relation 0 of all groups; relation 1 ...] holds over the global batch.
- Gradient accumulation averages the gradients of `grad_accum` separate contrastive losses: it
  smooths the step like a larger batch would, but it adds no negatives (each loss only sees
  its micro-batch, gathered over ranks). For more negatives raise `groups_per_batch` or ranks.
- The learning rate is a pure function of the step (StepLR by nominal epochs), so a resumed
  run needs no scheduler state. The data stream is replayed from the step (see streaming.py),
  and the loader never draws from the global RNG, so killed-and-resumed equals unbroken.
- A non-finite loss stops every rank before the update; the trainable weights are checked at
  every log line, before every checkpoint and before the export, so no NaN or inf is ever
  saved and the newest checkpoint stays the last good one.
- A run holds an exclusive lock on RUN_DIR and a shared one on the build it reads
  (teminal.pipeline.lock): a second training into RUN_DIR, or a build into --data, refuses.
- Checkpoints hold tensors and JSON only, and a resume reads them with tensors-only semantics
  (teminal.train.run_state).
"""
from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import pickle
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from teminal.models.provenance import DataSelection, TrainingProvenance, absolute_spec
from teminal.models.registry import checkpoint_folder
from teminal.models.trainable import weight_names
from teminal.pipeline.lock import read_lock, run_lock
from teminal.pipeline.progress import progress_bar
from teminal.train.averaging import WeightAverage
from teminal.train.losses import positive_mask
from teminal.train.run_config import (TrainConfig, differences, dump, head_value, present_patterns,
                                      present_rules, resume_keys)
from teminal.train.run_state import (COMPLETE_FILE, TrainProgress, check_state_files,
                                     checkpoint_dir, complete_checkpoints, disk_error,
                                     last_good_checkpoint, load_average, migrate_legacy_state,
                                     non_finite_weight, read_progress, remove_partial,
                                     save_run_state, truncate_metrics)
from teminal.train.streaming import (CaptionFn, GroupStream, KeyFn, ShardIndex, StreamPlan,
                                     TemplateCaption, canonical_caption, catalog_builds,
                                     make_loader, member_samples, select_group_keys)

log = logging.getLogger("teminal.train")

SETTINGS_HISTORY = "settings_history.json"  # earlier settings of a run resumed with changes

# (audio [R*N, D], text [R*N, D], logit scale, N groups, config, positives=[R*N, R*N] bool)
# -> scalar loss. With stage B's single-sound replay the batch holds one more block of N rows.
LossFn = Callable[..., torch.Tensor]


@dataclass(frozen=True)
class Stage:
    name: str                       # pretrain | stage_a | stage_b (also the TensorBoard project)
    data_stage: str                 # which shards: "a" or "b"
    relations: tuple[str, ...]      # members per group, in block order
    loss: LossFn
    caption: CaptionFn = canonical_caption
    wants_init: str | None = None   # warning when not started from a project checkpoint
    positive_key: KeyFn | None = None  # which rows are positives; None: identical texts
    replay: str | None = None       # relation replayed as a single clip when cfg.retain_singles


class NonFiniteLoss(RuntimeError):
    pass


class NonFiniteWeights(NonFiniteLoss):
    """Trainable weights that hold NaN or inf: nothing of that step is saved (exit code 3)."""


@dataclass
class RunResult:
    stage: str
    steps: int
    first_loss: float | None
    final_loss: float | None
    samples_per_s: float
    data_stall: float
    seconds: float
    world_size: int
    final_dir: str | None


class EmbedStep(nn.Module):
    """The module DDP wraps: embeddings and the logit scale come out of one forward, so every
    trainable parameter's gradient (the temperature's too) is synchronised."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, audio: torch.Tensor, text_tokens, sample_rate: int) -> tuple[torch.Tensor, ...]:
        # the adapter resamples the batch once when the shards' rate is not the model's
        audio_emb, text_emb = self.model(audio=audio, text_tokens=text_tokens,
                                         sample_rate=sample_rate)
        return audio_emb, text_emb, self.model.logit_scale()


def gather_blocks(emb: torch.Tensor, n_blocks: int) -> torch.Tensor:
    """All ranks' [n_blocks * N, D] rows, with gradient, as [n_blocks * world * N, D] in block
    order (block r holds relation r of rank 0's groups, then rank 1's, ...). Integer tensors
    (positive ids, [n_blocks * N]) are gathered the same way, without autograd."""
    import warnings

    import torch.distributed as dist
    from torch.distributed.nn.functional import all_gather

    world = dist.get_world_size()
    if not emb.is_floating_point():
        parts = [torch.empty_like(emb) for _ in range(world)]
        dist.all_gather(parts, emb.contiguous())
        return torch.stack(parts).reshape(world, n_blocks, -1).transpose(0, 1).reshape(-1)
    with warnings.catch_warnings():  # deprecated for a private successor; still exact
        warnings.filterwarnings("ignore", ".*all_gather is deprecated", FutureWarning)
        parts = torch.stack(all_gather(emb.contiguous()))       # [W, R*N, D]
    parts = parts.reshape(world, n_blocks, -1, emb.shape[-1])   # [W, R, N, D]
    return parts.transpose(0, 1).reshape(-1, emb.shape[-1])     # [R*W*N, D]


def lr_at(step: int, cfg: TrainConfig, steps_per_epoch: int) -> float:
    """StepLR by nominal epochs, after a linear warm-up over the first warmup_steps steps."""
    warm = min(1.0, (step + 1) / cfg.warmup_steps) if cfg.warmup_steps else 1.0
    return cfg.lr * cfg.lr_gamma ** (step // steps_per_epoch) * warm


# Checkpoints

def any_rank(accelerator, flag: bool) -> bool:
    """Whether `flag` holds on any rank (every rank must call it: a collective)."""
    bad = torch.tensor([1.0 if flag else 0.0], device=accelerator.device)
    if accelerator.num_processes > 1:
        bad = accelerator.reduce(bad, "sum")
    return bad.item() > 0


def save_checkpoint(accelerator, run_dir: Path, step: int, keep: int,
                    progress: TrainProgress | None = None, average=None) -> Path:
    """Accelerate's state and the project's (run_state), then COMPLETE. A failed write (a full
    disk) on any rank removes the unfinished folder on every rank and is one OSError naming the
    path; the older checkpoints are untouched."""
    path = checkpoint_dir(run_dir, step)
    failure = None
    try:
        accelerator.save_state(str(path))
        if accelerator.is_main_process:
            save_run_state(path, progress or TrainProgress(step=step), average)
    except OSError as e:
        failure = e
    if any_rank(accelerator, failure is not None):
        if accelerator.is_main_process:
            remove_partial(path)
        raise disk_error(failure or OSError("another rank's write failed"), path, run_dir)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        (path / COMPLETE_FILE).write_text(json.dumps({"step": step}) + "\n")
        for old in complete_checkpoints(run_dir)[:-max(1, keep)]:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return path


# The run

def _accelerator(cfg: TrainConfig, run_dir: Path):
    from accelerate import Accelerator
    from accelerate.utils import DistributedDataParallelKwargs, ProjectConfiguration

    trackers = None
    if cfg.tensorboard:
        try:
            import tensorboard  # noqa: F401
            trackers = "tensorboard"
        except ImportError:
            log.warning("tensorboard is not installed; no TensorBoard logs")
    return Accelerator(
        cpu=cfg.cpu, mixed_precision=cfg.mixed_precision,
        gradient_accumulation_steps=cfg.grad_accum, log_with=trackers,
        project_config=ProjectConfiguration(project_dir=str(run_dir),
                                            logging_dir=str(run_dir / "tb")),
        kwargs_handlers=[DistributedDataParallelKwargs(
            find_unused_parameters=cfg.find_unused_parameters)])


def _load_model(spec: str, device):
    from teminal.models import load_model

    return load_model(spec, device=str(device))


def model_spec(spec: str, flag: str = "--model") -> str:
    """A run dir stands for its final/ checkpoint; other specs ("small", "laion:...", "hf:...",
    bundled names) pass through to load_model, which explains what is wrong with them."""
    from teminal.models.registry import checkpoint_folder

    folder = checkpoint_folder(spec)
    if folder is not None:
        return str(folder)
    if flag == "--init":
        raise FileNotFoundError(f"--init {spec}: no config.json there (nor in final/); give a "
                                f"checkpoint dir written by a training run (RUN_DIR or "
                                f"RUN_DIR/final)")
    return spec


def _query_now(cfg: dict | None) -> str | None:
    """The text of a recorded setting's query file, if it is still readable."""
    try:
        return _read_query_file((cfg or {}).get("query_file"))
    except FileNotFoundError:
        return None


def _read_query_file(path: str | None) -> str | None:
    if not path:
        return None
    try:
        return Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise FileNotFoundError(f"--query-file {path}: cannot read it ({e.__class__.__name__}: "
                                f"{e}); give a UTF-8 text file holding one SQL query") from None


def run(cfg: TrainConfig, stage: Stage,
        model_factory: Callable[[str, object], nn.Module] = _load_model) -> RunResult:
    """Train `stage` with `cfg` (see the module docstring); returns the run's summary."""
    run_dir = Path(cfg.out)
    accelerator = _accelerator(cfg, run_dir)
    with _locks(accelerator, run_dir, cfg.data):
        log_file = _setup_logging(accelerator, run_dir)
        try:
            result = Trainer(cfg, stage, accelerator, model_factory).train()
            accelerator.wait_for_everyone()
            return result
        finally:
            accelerator.end_training()
            if log_file is not None:
                logging.getLogger("teminal").removeHandler(log_file)
                log_file.close()


@contextlib.contextmanager
def _locks(accelerator, run_dir: Path, data):
    """The run folder's exclusive lock (main process: one training per RUN_DIR) and a shared
    lock on the build it reads (every rank: no build replaces it mid-run)."""
    with contextlib.ExitStack() as stack:
        if accelerator.is_main_process:
            run_dir.mkdir(parents=True, exist_ok=True)
            stack.enter_context(run_lock(run_dir))
        if data:
            stack.enter_context(read_lock(Path(data), "a training"))
        yield


class Clock:
    """Wall time and time spent waiting for data, over the run and since the last log line."""

    def __init__(self):
        self.t_run = self.t_log = time.perf_counter()
        self.wait_run = self.wait_log = 0.0
        self.steps_log = 0

    def waited(self, seconds: float) -> None:
        self.wait_run += seconds
        self.wait_log += seconds

    def since_log(self) -> float:
        return max(time.perf_counter() - self.t_log, 1e-9)

    def interval(self) -> tuple[float, float, int]:
        """(seconds, waited, steps) since the last call; starts the next interval."""
        now = time.perf_counter()
        out = (max(now - self.t_log, 1e-9), self.wait_log, self.steps_log)
        self.t_log, self.wait_log, self.steps_log = now, 0.0, 0
        return out


class Trainer:
    """One run: everything is set up in __init__ (data plan, model, optimizer, resume, loader);
    `train` runs the steps, checkpoints and exports."""

    def __init__(self, cfg: TrainConfig, stage: Stage, accelerator, model_factory):
        from accelerate.utils import set_seed

        self.cfg, self.stage, self.acc = cfg, stage, accelerator
        self.run_dir = Path(cfg.out)
        self.world, self.main = accelerator.num_processes, accelerator.is_main_process
        self.metrics_path = self.run_dir / "metrics.jsonl"
        previous = complete_checkpoints(self.run_dir)
        if (previous or (self.run_dir / "final").exists()) and not cfg.resume:
            raise FileExistsError(f"{self.run_dir} already holds a run (checkpoints or final/); "
                                  f"pass --resume to continue it, or choose another --out")
        self.spec = model_spec(cfg.init, "--init") if cfg.init else model_spec(cfg.model)
        if stage.wants_init and checkpoint_folder(self.spec) is None:
            log.warning(stage.wants_init)  # not a project checkpoint: no earlier stage ran
        set_seed(cfg.seed)

        self.query = _read_query_file(cfg.query_file)   # its text, as the run used it
        keep = select_group_keys(cfg.data, stage.data_stage, cfg.split, cfg.where, self.query)
        self.index = ShardIndex.build(cfg.data, stage.data_stage, cfg.split, keep,
                                      skip_missing=cfg.skip_missing_shards)
        self.global_groups = cfg.groups_per_batch * self.world * cfg.grad_accum
        self.replay = stage.replay if cfg.retain_singles > 0 else None
        self.n_blocks = len(stage.relations) + (1 if self.replay else 0)
        self.samples_per_step = self.global_groups * self.n_blocks
        self._check_batch_memory()
        self.steps_per_epoch = max(1, self.index.num_groups // self.global_groups)
        self.max_steps = cfg.max_steps if cfg.max_steps is not None else \
            math.ceil(cfg.epochs * self.steps_per_epoch)

        self.model = model_factory(self.spec, accelerator.device)
        if cfg.audio_head and not self.model.supports_audio_head:
            raise ValueError(f"--audio-head: model {self.spec} ({self.model.family} family) has "
                             f"no order-aware head option")
        if cfg.audio_head and self.model.add_audio_head(head_value(cfg.audio_head)):
            log.info("added an order-aware audio head %s (zero-initialised: the model starts "
                     "as the base)", self.model.config["audio_head"])
        # `?PATTERN`s apply where the model has such parameters (run_config.present_patterns)
        n_train, n_total = self.model.set_trainable(
            present_patterns(cfg.trainable, weight_names(self.model).values()))
        if n_train == 0:  # else torch's "optimizer got an empty parameter list"
            names = [n for n, _ in self.model.named_parameters()]
            raise ValueError(f"--trainable {cfg.trainable} matches no trainable parameter of "
                             f"{self.spec}; names look like {', '.join(names[:4])} (shell-style "
                             f"globs, or re:REGEX)")
        log.info("model %s: %s of %s parameters train (%.1f%%)", self.spec, f"{n_train:,}",
                 f"{n_total:,}", 100 * n_train / max(1, n_total))
        trained = {id(p) for p in self.model.parameters() if p.requires_grad}
        lr_mult = present_rules(cfg.lr_mult, [n for i, n in weight_names(self.model).items()
                                              if i in trained])
        groups = param_groups(self.model, cfg.logit_scale_lr_mult, lr_mult)
        self.params = [p for g in groups for p in g["params"]]
        self.named_params = [(n, p) for n, p in self.model.named_parameters() if p.requires_grad]
        optimizer = adam(groups, cfg.lr, cfg.weight_decay)
        self.step_module, self.optimizer = accelerator.prepare(EmbedStep(self.model), optimizer)
        self.step_module.train()
        # saved as checkpoint files by run_state, never registered with Accelerate (which
        # would pickle them and unpickle them with full pickle on resume)
        builds = catalog_builds(cfg.data)
        self.progress = TrainProgress(
            world_size=self.world, num_workers=cfg.num_workers, selection=self.index.digest(),
            build_ids=[b["build_id"] for b in builds], catalog_sha256=self.index.catalog_sha256)
        self.average = None
        if cfg.average_from is not None:
            self.average = WeightAverage(self.params, cfg.average_from, cfg.average_every)

        self.start = 0
        if cfg.resume:
            self.start = self._resume(previous)
        elif self.main and self.metrics_path.exists():
            self.metrics_path.unlink()
        if self.main:
            dump(cfg, self.run_dir / "run_config.yaml")
            if cfg.tensorboard:
                accelerator.init_trackers(stage.name, config=_scalars(cfg.to_dict()))
        self.loader = self._loader()

    def _loader(self):
        cfg = self.cfg
        caption = TemplateCaption(tuple(cfg.templates)) if cfg.templates else self.stage.caption
        plan = StreamPlan(self.index, cfg.seed, self.acc.process_index, self.world,
                          cfg.num_workers)
        stream = GroupStream(plan, self.stage.relations, cfg.groups_per_batch, caption,
                             skip_batches=self.start * cfg.grad_accum,
                             shuffle_buffer=cfg.shuffle_buffer, caption_seed=cfg.seed,
                             positive_key=self.stage.positive_key, replay=self.replay)
        log.info("%s: %d groups in %d shards (split by %s), %d groups per step over %d "
                 "rank(s) -> %d steps per epoch; steps %d..%d; %s negatives", self.stage.name,
                 self.index.num_groups, len(self.index.shards),
                 "shard" if plan.by_shard else "group", self.global_groups, self.world,
                 self.steps_per_epoch, self.start, self.max_steps,
                 "global" if self.world > 1 and self.cfg.global_negatives else "local")
        return make_loader(stream, prefetch=cfg.prefetch,
                           pin_memory=self.acc.device.type == "cuda")

    # the loop

    def train(self) -> RunResult:
        cfg, clock = self.cfg, Clock()
        bar = progress_bar(self.max_steps, self.stage.name, "step",
                           enabled=self.main and cfg.progress, initial=self.start)
        batches, first_loss, loss = iter(self.loader), None, None
        for step in range(self.start, self.max_steps):
            lr = lr_at(step, cfg, self.steps_per_epoch)
            for group in self.optimizer.param_groups:
                group["lr"] = lr * group.get("lr_mult", 1.0)
            loss, info = self._step(step, lr, batches, clock)
            first_loss = loss if first_loss is None else first_loss
            self.progress.step = done = step + 1
            clock.steps_log += 1
            rate = self.samples_per_step * clock.steps_log / clock.since_log()
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.3f}", lr=f"{lr:.2g}", samples_s=f"{rate:.1f}",
                            refresh=False)  # redraws follow the bar's own interval
            if done % max(1, cfg.log_every) == 0 or done in (1, self.max_steps):
                self._check_weights(done, lr)
                loss = self._log(done, loss, lr, info, clock)
            if self.average and self.average.due(done):
                self.average.add(done)
            if cfg.save_every and done % cfg.save_every == 0 and done < self.max_steps:
                self._save(done, lr)
        bar.close()
        return self._finish(first_loss, loss, clock)

    def _step(self, step: int, lr: float, batches, clock: Clock) -> tuple[float, dict]:
        """One optimizer step over grad_accum micro-batches; (mean loss, values to log)."""
        from accelerate.utils import send_to_device

        losses, info = [], {}
        for _ in range(self.cfg.grad_accum):
            t0 = time.perf_counter()
            batch = next(batches)
            clock.waited(time.perf_counter() - t0)
            if step == self.start and batch["sample_rate"] != self.model.sample_rate:
                log.info("the shards hold %d Hz audio; the model resamples every batch to %d Hz"
                         " (build the shards at the model's rate to save that)",
                         batch["sample_rate"], self.model.sample_rate)
            with self.acc.accumulate(self.step_module):
                audio = batch["audio"].to(self.acc.device, non_blocking=True)
                tokens = send_to_device(self.model.tokenize(batch["texts"]), self.acc.device)
                audio_emb, text_emb, scale = self.step_module(audio, tokens, batch["sample_rate"])
                n_groups, ids = self.cfg.groups_per_batch, batch["positive_ids"].to(audio.device)
                if self.world > 1 and self.cfg.global_negatives:
                    audio_emb = gather_blocks(audio_emb, self.n_blocks)
                    text_emb = gather_blocks(text_emb, self.n_blocks)
                    ids = gather_blocks(ids, self.n_blocks)
                    n_groups *= self.world
                loss = self.stage.loss(audio_emb.float(), text_emb.float(), scale.float(),
                                       n_groups, self.cfg, positives=positive_mask(ids))
                self._stop_if_not_finite(loss, step, lr)
                self.acc.backward(loss)
                if self.acc.sync_gradients and self.cfg.grad_clip:
                    info["grad_norm"] = float(
                        self.acc.clip_grad_norm_(self.params, self.cfg.grad_clip))
                self.optimizer.step()
                self.optimizer.zero_grad(set_to_none=True)
            losses.append(loss.item())
        info.update(logit_scale=float(scale.detach()), data_epoch=batch["epoch"])
        return sum(losses) / len(losses), info

    def _stop_if_not_finite(self, loss: torch.Tensor, step: int, lr: float) -> None:
        """Every rank stops together, before the update, when any rank's loss is not finite."""
        if any_rank(self.acc, not bool(torch.isfinite(loss))):
            raise NonFiniteLoss(
                f"{self.stage.name}: the loss is {loss.item()} at step {step + 1} (lr {lr:g}); "
                f"stopped before updating. {self._last_good()}; lower --lr or check the data, "
                f"then --resume")

    def _resume(self, previous: list[Path]) -> int:
        """Continue from the newest complete checkpoint: its files are checked (tensors only),
        its settings and data compared with this run's (refused unless --resume-changed), then
        loaded; weights holding NaN or inf are refused."""
        acc, cfg = self.acc, self.cfg
        if not previous:
            log.warning("--resume: no complete checkpoint in %s/checkpoints; starting at step 0",
                        self.run_dir)
            if self.main:
                truncate_metrics(self.metrics_path, 0)
            return 0
        path = previous[-1]
        check_state_files(path)
        if self.main:
            migrate_legacy_state(path)
        acc.wait_for_everyone()
        saved = read_progress(path)
        old, lines = _resume_changes(cfg, self.run_dir)
        lines += data_changes(saved, self.progress)
        if lines and not cfg.resume_changed:
            _refuse_resume(self.run_dir, path, lines)
        self._load_state(path, lines)
        self.progress.step = saved.step
        if lines:
            _record_resume_changes(acc, cfg, self.run_dir, saved.step, old, lines)
        if saved.world_size != acc.num_processes:
            log.warning("resuming on %d processes a run saved on %d: the data order differs",
                        acc.num_processes, saved.world_size)
        if self.main:
            truncate_metrics(self.metrics_path, saved.step)
        log.info("resumed from %s at step %d", path, saved.step)
        return saved.step

    def _load_state(self, path: Path, changes: list[str]) -> None:
        try:
            self.acc.load_state(str(path), load_kwargs={"weights_only": True})
            load_average(path, self.average)
        except (RuntimeError, ValueError, KeyError, OSError, pickle.UnpicklingError) as e:
            text = " ".join(str(e).split())[:300]
            if changes:
                raise ValueError(f"--resume-changed: {path} cannot continue with the changed "
                                 f"settings ({'; '.join(changes)}): {text}") from None
            raise ValueError(f"--resume: {path} cannot be loaded into this run ({text}); move "
                             f"it away to resume from the checkpoint before") from None
        name = non_finite_weight(self.named_params)
        if name is not None:
            raise ValueError(f"--resume: {path} holds NaN or inf weights ({name}); move it "
                             f"away to resume from the checkpoint before, with a lower --lr "
                             f"(--resume-changed)")

    def _last_good(self) -> str:
        last = last_good_checkpoint(self.run_dir)
        return f"The last good checkpoint is {last or 'none (no checkpoint was saved yet)'}"

    def _check_weights(self, step: int, lr: float, what: str = "the trainable weights") -> None:
        """Stop before logging, saving or exporting weights that hold NaN or inf (the same
        weights on every rank: DDP keeps them equal, so every rank stops here together)."""
        name = non_finite_weight(self.named_params)
        if name is not None:
            raise NonFiniteWeights(
                f"{self.stage.name}: {what} hold NaN or inf after step {step} (first: {name}; "
                f"lr {lr:g}); nothing of this step was saved. {self._last_good()}; lower --lr "
                f"(or --grad-clip), then --resume")

    def _save(self, step: int, lr: float) -> Path:
        self._check_weights(step, lr)
        return save_checkpoint(self.acc, self.run_dir, step, self.cfg.keep_checkpoints,
                               self.progress, self.average)

    def _check_batch_memory(self) -> None:
        """Refuse --groups-per-batch values whose audio alone would not fit in memory: the
        batch in use and those the loader's workers hold ready (float32 clips)."""
        from teminal.pipeline.machine import memory_problem

        cfg = self.cfg
        samples = member_samples(cfg.data, self.stage.data_stage, cfg.split)
        batches = 1 + cfg.prefetch * max(1, cfg.num_workers)
        need = batches * cfg.groups_per_batch * self.n_blocks * samples * 4
        problem = memory_problem("--groups-per-batch", cfg.groups_per_batch, need,
                                 f"the audio of {batches} batch(es) of {self.n_blocks} x "
                                 f"{cfg.groups_per_batch} clips of {samples} samples")
        if problem:
            raise ValueError(problem)

    def _log(self, step: int, loss: float, lr: float, info: dict, clock: Clock) -> float:
        if not (self.world > 1 and self.cfg.global_negatives):  # local losses differ by rank
            loss = self.acc.reduce(torch.tensor([loss], device=self.acc.device), "mean").item()
        seconds, waited, steps = clock.interval()
        samples_per_s = self.samples_per_step * steps / seconds
        row = {"step": step, "loss": loss, "lr": lr, "samples_per_s": samples_per_s,
               "epoch": step / self.steps_per_epoch, "data_wait": waited / seconds,
               "time": clock.t_log - clock.t_run, **info, **self._skipped()}
        if self.main:
            try:
                with open(self.metrics_path, "a") as f:
                    f.write(json.dumps(row) + "\n")
            except OSError as e:
                raise disk_error(e, self.metrics_path, self.run_dir) from None
        self.acc.log(row, step=step)
        return loss

    def _skipped(self) -> dict:
        """Shards and groups --skip-missing-shards left out (nothing when none was)."""
        if not self.index.skipped:
            return {}
        return {"skipped_shards": len(self.index.skipped),
                "skipped_groups": self.index.skipped_groups}

    def _finish(self, first_loss, final_loss, clock: Clock) -> RunResult:
        seconds = time.perf_counter() - clock.t_run
        done = self.max_steps - self.start
        lr = lr_at(max(0, self.progress.step - 1), self.cfg, self.steps_per_epoch)
        if done > 0 or not complete_checkpoints(self.run_dir):
            self._save(self.progress.step, lr)
        final_dir = self.run_dir / "final"
        if self.average:  # after the checkpoint, which keeps the raw weights for a resume
            if self.average.copy_to_params():
                log.info("exporting the mean of the weights at steps %s", self.average.steps)
            else:
                log.warning("--average-from %d: no snapshot in %d steps; exporting the last "
                            "step's weights", self.average.first, self.progress.step)
        self._check_weights(self.progress.step, lr, "the weights to export")
        if self.main:
            _export(self.acc.unwrap_model(self.step_module).model, final_dir, self.cfg,
                    self.stage, self.spec, self.progress.step, self.world,
                    DataSelection.of_train_config(self.cfg.to_dict(), self.query),
                    self.index.digest())
        result = RunResult(self.stage.name, self.progress.step, first_loss, final_loss,
                           self.samples_per_step * done / max(seconds, 1e-9), clock.wait_run / max(seconds, 1e-9), seconds,
                           self.world, str(final_dir))
        if self.main:
            summary = {**asdict(result), **self._skipped()}
            (self.run_dir / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
            skipped = self._skipped()
            print(_summary_line(result, self.start) + (
                f"; SKIPPED {skipped['skipped_shards']} missing shard(s), "
                f"{skipped['skipped_groups']} groups" if skipped else ""), flush=True)
        return result



def param_groups(model, logit_scale_lr_mult: float = 1.0,
                 lr_mult: list[str] | None = None) -> list[dict]:
    """The trainable parameters as optimizer groups, one per learning-rate multiple: the
    temperature (every family names it `...logit_scale...`) at `logit_scale_lr_mult`, the
    rest at the factor of the first `lr_mult` rule (`PATTERN=FACTOR`, over the names
    --trainable sees) that matches it, else 1. Parameters keep the model's order within a
    group, so a run without multipliers is the single group it always was."""
    from teminal.models.trainable import multiplier_of, parse_multiplier, select, weight_names

    rules = [parse_multiplier(r) for r in lr_mult or []]
    names = weight_names(model) if rules else {}
    trainable = [(names.get(id(p), n), p) for n, p in model.named_parameters() if p.requires_grad]
    unused = [rule for rule, (pattern, _) in zip(lr_mult or [], rules)
              if select([n for n, _ in trainable], [pattern])[1]]
    if unused:  # a typo would otherwise train at the full rate without a word
        raise ValueError(f"--lr-mult {unused} match(es) no trainable parameter; trainable names "
                         f"look like {[n for n, _ in trainable][:3]} (the --trainable patterns)")
    groups: dict[float, list] = {}
    for n, p in trainable:
        mult = float(logit_scale_lr_mult) if "logit_scale" in n else multiplier_of(n, rules)
        groups.setdefault(mult, []).append(p)
    if not groups:
        return [{"params": [], "lr_mult": 1.0}]
    ordered = sorted(groups, key=lambda m: (m != 1.0, list(groups).index(m)))
    return [{"params": groups[m], "lr_mult": m} for m in ordered]


def adam(params, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    """Adam with torch's fused kernel (CPU and CUDA): the same update in one pass over each
    tensor. On CPU torch's default is a Python loop over tensors: 0.42 s per step for the small
    model's 24 M parameters against 0.06 s fused (1 thread), a third of a pretraining step.
    Results agree to float rounding (1 ulp), like a run on another CPU."""
    try:
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay, fused=True)
    except (RuntimeError, TypeError):  # a device without a fused Adam: the default loop
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)


def _resume_changes(cfg, run_dir: Path) -> tuple[dict | None, list[str]]:
    """(the checkpointed run's settings, the settings this resume changes among resume_keys():
    every setting but the machinery, run_config.RESUME_FREE)."""
    import yaml

    old_path = run_dir / "run_config.yaml"
    try:
        old = yaml.safe_load(old_path.read_text()) if old_path.exists() else None
    except (OSError, yaml.YAMLError) as e:
        raise ValueError(f"--resume: {old_path} is unreadable ({' '.join(str(e).split())}); "
                         f"it records the run's settings: restore it, or choose another --out"
                         ) from None
    # a setting added after the run started reads as its default (what the run trained with)
    changed = (differences({**TrainConfig().to_dict(), **old}, cfg.to_dict(), resume_keys())
               if isinstance(old, dict) else {})
    return old, [f"{k}: {a!r} -> {b!r}" for k, (a, b) in changed.items()]


def data_changes(saved: TrainProgress, now: TrainProgress) -> list[str]:
    """What differs between the data a checkpoint trained on and the data --data holds now
    (fields a checkpoint from before they were recorded leaves empty are not compared)."""
    lines = []
    if saved.build_ids and saved.build_ids != now.build_ids:
        lines.append(f"data build: {saved.build_ids} -> {now.build_ids} (the build under "
                     f"--data was replaced)")
    if saved.catalog_sha256 and saved.catalog_sha256 != now.catalog_sha256:
        lines.append(f"data shards: the catalog's shard sha256 digest "
                     f"{saved.catalog_sha256[:12]} -> {now.catalog_sha256[:12]}")
    if saved.selection and saved.selection != now.selection:
        lines.append("the selected training groups differ (the query file, the catalog or the "
                     "shards changed since the checkpoint)")
    return lines


def _refuse_resume(run_dir: Path, path: Path, lines: list[str]):
    raise ValueError(
        f"--resume: {run_dir} was trained up to {path.name} with other settings:\n"
        + "".join(f"  {ln}\n" for ln in lines)
        + "rerun with the run's settings (see its run_config.yaml), choose another --out, or "
          "pass --resume-changed to continue anyway (final/config.json then records the "
          "earlier settings too)")


def _record_resume_changes(accelerator, cfg, run_dir: Path, step: int, old, lines) -> None:
    log.warning("--resume-changed: continuing %s from step %d with changed settings: %s",
                run_dir, step, "; ".join(lines))
    if accelerator.is_main_process:
        history_path = run_dir / SETTINGS_HISTORY
        history = json.loads(history_path.read_text()) if history_path.exists() else []
        history.append({"until_step": step, "train_config": old, "changed": lines})
        history_path.write_text(json.dumps(history, indent=1) + "\n")


def _export(model, final_dir: Path, cfg: TrainConfig, stage: Stage, spec: str, steps: int,
            world: int, selection: DataSelection, selection_sha256: str) -> None:
    builds = catalog_builds(cfg.data)
    history_path = Path(cfg.out) / SETTINGS_HISTORY
    history = json.loads(history_path.read_text()) if history_path.exists() else []
    provenance = TrainingProvenance(
        stage=stage.name, init=absolute_spec(spec), steps=steps, world_size=world,
        data=str(Path(cfg.data).resolve()),
        build_id=builds[0]["build_id"] if len(builds) == 1 else
        [b["build_id"] for b in builds] or None,
        synthetic=any(bool(b["synthetic"]) for b in builds) if builds else None,
        relations=stage.relations, selection=selection, selection_sha256=selection_sha256,
        # the steps before a --resume-changed trained on the earlier settings' selections
        # (their query files as they are now, when still there: the evaluator unions them)
        earlier_selections=tuple(DataSelection.of_train_config(
            h.get("train_config"), _query_now(h.get("train_config"))) for h in history),
        train_config=cfg.to_dict(), earlier_train_configs=history or [])
    partial = final_dir.with_name(final_dir.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    try:
        model.save(str(partial), provenance)
    except OSError as e:
        shutil.rmtree(partial, ignore_errors=True)
        raise disk_error(e, final_dir, Path(cfg.out)) from None
    if final_dir.exists():
        shutil.rmtree(final_dir)
    partial.rename(final_dir)  # a reader never sees a half-written final/


def _summary_line(r: RunResult, start: int) -> str:
    loss = (f"loss {r.first_loss:.4f} -> {r.final_loss:.4f}" if r.final_loss is not None
            else "no steps run")
    return (f"{r.stage}: steps {start}->{r.steps} in {r.seconds:.1f} s on {r.world_size} "
            f"process(es), {r.samples_per_s:.1f} samples/s, {loss}, data stall "
            f"{r.data_stall:.1%}; model in {r.final_dir}")


def _scalars(d: dict) -> dict:
    return {k: v if isinstance(v, (int, float, str, bool)) else str(v) for k, v in d.items()}


def _setup_logging(accelerator, run_dir: Path) -> logging.Handler | None:
    """INFO to RUN_DIR/train.log on the main process; other ranks only warn."""
    logger = logging.getLogger("teminal")
    if not accelerator.is_main_process:
        logger.setLevel(logging.WARNING)
        return None
    run_dir.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(run_dir / "train.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    return handler


def main_for(stage: Stage, argv: list[str] | None = None, description: str = "",
             model_factory: Callable[[str, object], nn.Module] | None = None) -> int:
    """Entry point of a stage script: settings from YAML + flags, then `run`. Every way it
    stops early is one line on stderr: an error (exit 2; 3 for a NaN), or Ctrl-C (exit 130),
    which names the last complete checkpoint and the command that resumes from it."""
    import sys

    from teminal.train.run_config import resolve

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    cfg = None
    try:
        cfg = resolve(stage.name, argv, description)
        set_log_level(cfg.log_level)
        run(cfg, stage, model_factory or _load_model)
    except KeyboardInterrupt:
        if int(os.environ.get("RANK", "0")) == 0:   # every rank gets the Ctrl-C; one speaks
            print(interrupted_line(stage, cfg, argv), file=sys.stderr, flush=True)
        return 130
    except NonFiniteLoss as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        return 3
    except (ValueError, OSError, KeyError) as e:  # bad settings, data or checkpoints
        # One message, not a traceback (under `accelerate launch -q` nothing else is printed).
        print(f"error: {_one_message(e)}", file=sys.stderr, flush=True)
        return 2
    return 0


def set_log_level(level: str) -> None:
    """The console shows `level` and up; Accelerate's own INFO lines (five per checkpoint:
    "Saving current state to ...", "Model weights saved in ...") only at debug. The run's log
    file (RUN_DIR/train.log) keeps INFO whatever the console shows."""
    number = getattr(logging, level.upper())
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.StreamHandler) and \
                not isinstance(handler, logging.FileHandler):
            handler.setLevel(number)
    logging.getLogger("accelerate").setLevel(number if level == "debug" else
                                             max(number, logging.WARNING))


def interrupted_line(stage: Stage, cfg: TrainConfig | None, argv: list[str] | None) -> str:
    """The one line Ctrl-C prints: the newest complete checkpoint and the command that resumes
    from it (a run interrupted before its first checkpoint restarts at step 0)."""
    if cfg is None or not cfg.out:
        return f"{stage.name}: interrupted before the run started; nothing was saved"
    done = complete_checkpoints(Path(cfg.out))
    where = (f"the last complete checkpoint is {done[-1]}" if done else
             "no checkpoint was complete yet (the run restarts at step 0)")
    return f"{stage.name}: interrupted; {where}; resume with: {resume_command(stage, argv)}"


def resume_command(stage: Stage, argv: list[str] | None = None) -> str:
    """The command line of this run with --resume: the script as it was started, its
    arguments, and `accelerate launch -q` with the process count and precision when it was
    launched by Accelerate (whose launcher sets ACCELERATE_* variables)."""
    import shlex
    import sys

    args = list(sys.argv[1:] if argv is None else argv)
    if "--resume" not in args:
        args.append("--resume")
    script = sys.argv[0] if argv is None and sys.argv[0].endswith(".py") else \
        f"train/{stage.name}.py"
    env = os.environ
    launcher = ["python"]
    if "ACCELERATE_DYNAMO_BACKEND" in env:
        launcher = ["accelerate", "launch", "-q"]
        if int(env.get("WORLD_SIZE", "1")) > 1:
            launcher += ["--multi_gpu", "--num_processes", env["WORLD_SIZE"]]
        if env.get("ACCELERATE_USE_CPU", "").lower() == "true":
            launcher += ["--cpu"]
        if env.get("ACCELERATE_MIXED_PRECISION", "no") != "no":
            launcher += ["--mixed_precision", env["ACCELERATE_MIXED_PRECISION"]]
    return shlex.join([*launcher, script, *args])


def _one_message(e: BaseException) -> str:
    """The user-facing text of an error; a DataLoader worker's re-raise carries the worker's
    traceback in its message, of which only the last line (the original error) is kept."""
    text = str(e.args[0]) if isinstance(e, KeyError) and e.args else str(e)
    if "Original Traceback" in text:
        last = text.strip().splitlines()[-1]
        text = last.split(": ", 1)[1] if ": " in last else last
    return text
