"""A training run's settings: dataclass defaults, then a YAML file, then a named recipe, then
command-line flags.

Every field is a flag (`lambda_a` is `--lambda-a`); a YAML key that is not a field is an error
that lists the valid ones. Without `--config` the stage's default file for the model family is
used: `configs/small_<stage>.yaml` for the small model (and checkpoints made from it),
`configs/laion_<stage>.yaml` (the paper's settings) for every pretrained family: laion:, hf:,
msclap: and checkpoints made from them. `--recipe NAME|PATH` applies a recipe's section for the
stage and then its section for the model's family over that file (teminal.train.recipes); the
run records the resolved recipe (`recipe`) and the hash of what it took from it (`recipe_hash`).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import typing
from dataclasses import dataclass
from pathlib import Path

import yaml

CONFIG_DIR = Path(__file__).parent / "configs"
LOG_LEVELS = ("debug", "info", "warning", "error")
OPTIONAL = "?"  # a --trainable / --lr-mult pattern that applies only where it matches


@dataclass
class TrainConfig:
    # Every setting's meaning is its --help text, HELP below.
    # what to train, on what, where to write
    model: str = "small"
    data: str | None = None
    out: str | None = None
    init: str | None = None
    resume: bool = False
    resume_changed: bool = False
    split: str = "train"
    where: str | None = None
    query_file: str | None = None
    templates: list[str] | None = None
    skip_missing_shards: bool = False
    # schedule
    seed: int = 0
    max_steps: int | None = None
    epochs: float = 1.0
    groups_per_batch: int = 8
    grad_accum: int = 1
    lr: float = 1e-3
    lr_gamma: float = 0.95
    warmup_steps: int = 0
    weight_decay: float = 0.0
    # The learnable temperature's lr as a multiple of lr. Adam moves a parameter by about lr per
    # step, so at lr 5e-4 the log logit scale can move 0.13 in 250 steps: a short run from random
    # init keeps its initial 14.3 (1 / 0.07). 1: as lr (the paper). Freeing it did not help the
    # small model's pretraining (BENCHMARKS.md): the scale went down, not up.
    logit_scale_lr_mult: float = 1.0
    # Learning rates per parameter group, PATTERN=FACTOR (first match wins): e.g. the text
    # tower slower than a fresh head, so it learns less per class pair (BENCHMARKS.md).
    lr_mult: list[str] | None = None
    grad_clip: float | None = 0.5
    # Export the mean of the trainable weights at every average_every-th step from
    # average_from on (train/averaging.py); None: the last step's weights.
    average_from: int | None = None
    average_every: int = 50
    trainable: list[str] | None = None
    audio_head: str | None = None
    # loss
    global_negatives: bool = True
    lambda_a: float = 0.8
    alpha_same_time: float = 1.0
    alpha_cross_time: float = 1.0
    alpha_same_overlap: float = 1.0
    alpha_cross_overlap: float = 1.0
    beta: float = 1.0
    retain_singles: float = 0.0
    # machinery
    num_workers: int = 2
    shuffle_buffer: int = 64
    prefetch: int = 2
    save_every: int = 100
    keep_checkpoints: int = 2
    log_every: int = 10
    mixed_precision: str | None = None
    cpu: bool = False
    find_unused_parameters: bool = True
    tensorboard: bool = True
    progress: bool = True
    log_level: str = "info"
    # the recipe (--recipe) as resolved for the model's family, and the hash of what this
    # stage took from it (teminal.train.recipes); written by `resolve`, not flags themselves
    recipe: dict | None = None
    recipe_hash: str | None = None

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict, source: str = "config") -> "TrainConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"{source}: unknown setting(s) {unknown}; valid settings: "
                             f"{', '.join(sorted(names))}")
        return cls(**d)

    def validate(self) -> "TrainConfig":
        problems = []
        if not self.data:
            problems.append("--data OUT (a pipeline output folder) is required")
        if not self.out:
            problems.append("--out RUN_DIR is required")
        problems += [p for name, bound in bounds().items()
                     if (p := bound.problem(name, getattr(self, name))) is not None]
        if self.log_level not in LOG_LEVELS:
            problems.append(f"log_level (-v/--log-level) {self.log_level!r} is not one of "
                            f"{', '.join(LOG_LEVELS)}")
        if self.mixed_precision not in (None, "no", "fp16", "bf16"):
            problems.append(f"mixed_precision {self.mixed_precision!r} is not no, fp16 or bf16")
        for rule in self.lr_mult or []:
            from teminal.models.trainable import parse_multiplier
            try:
                parse_multiplier(rule)
            except ValueError as e:
                problems.append(f"--lr-mult: {e}")
        if self.audio_head:
            from teminal.models.heads import HeadSpec
            try:
                HeadSpec.parse(head_value(self.audio_head))
            except ValueError as e:
                problems.append(f"--audio-head: {e}")
        if problems:
            raise ValueError("invalid training settings:\n  " + "\n  ".join(problems))
        return self


@dataclass(frozen=True)
class Bound:
    """The range of a numeric setting: low..high (low excluded when `above`), a whole number
    when `whole`; None passes where it is the setting's default (no limit, not set)."""
    low: float
    high: float
    whole: bool = False
    above: bool = False
    why: str = ""

    def problem(self, name: str, value) -> str | None:
        if value is None and getattr(TrainConfig, name, 0) is None:
            return None
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if number and (value > self.low if self.above else value >= self.low) and \
                value <= self.high and (not self.whole or float(value).is_integer()):
            return None
        kind = "a whole number" if self.whole else "a finite number"
        low = f"> {_num(self.low)}" if self.above else f">= {_num(self.low)}"
        hint = " (YAML reads 1e-3 as text: write 1.0e-3)" if isinstance(value, str) else ""
        why = f" ({self.why})" if self.why else ""
        return (f"{name} (--{name.replace('_', '-')}) must be {kind} {low} and <= "
                f"{_num(self.high)}{why}, got {value!r}{hint}")


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


def _worker_bound() -> Bound:
    from teminal.evaluate.workers import usable_cpus, worker_limit

    return Bound(0, worker_limit(), whole=True,
                 why=f"loader processes per rank; this machine has {usable_cpus()} CPU(s)")


# Every numeric setting's range: finite, and far from values that only overflow or exhaust the
# machine (a batch's memory is checked by the trainer, which knows the clips' length).
LOSS_WEIGHT = Bound(0, 100)
BOUNDS = {
    "seed": Bound(0, 2**32 - 1, whole=True, why="numpy's seed range"),
    "max_steps": Bound(0, 10**9, whole=True),
    "epochs": Bound(0, 10**6, above=True),
    "groups_per_batch": Bound(1, 10**6, whole=True),
    "grad_accum": Bound(1, 10**4, whole=True),
    "lr": Bound(0, 1, above=True, why="Adam moves each weight by about lr per step"),
    "lr_gamma": Bound(0, 1, above=True, why="the factor per epoch of a decaying schedule"),
    "warmup_steps": Bound(0, 10**9, whole=True),
    "weight_decay": Bound(0, 1),
    "logit_scale_lr_mult": Bound(0, 1000),
    "grad_clip": Bound(0, 10**6, why="0, or null in YAML: no clipping"),
    "average_from": Bound(1, 10**9, whole=True),
    "average_every": Bound(1, 10**9, whole=True),
    "lambda_a": LOSS_WEIGHT, "alpha_same_time": LOSS_WEIGHT, "alpha_cross_time": LOSS_WEIGHT,
    "alpha_same_overlap": LOSS_WEIGHT, "alpha_cross_overlap": LOSS_WEIGHT, "beta": LOSS_WEIGHT,
    "retain_singles": LOSS_WEIGHT,
    "shuffle_buffer": Bound(0, 10**5, whole=True),
    "prefetch": Bound(1, 64, whole=True),
    "save_every": Bound(0, 10**9, whole=True),
    "keep_checkpoints": Bound(1, 10**4, whole=True),
    "log_every": Bound(0, 10**9, whole=True),
}


def bounds() -> dict[str, Bound]:
    """BOUNDS and the machine-dependent ones (loader workers: by the CPUs this process has)."""
    return {**BOUNDS, "num_workers": _worker_bound()}


# Settings a resume may change: how a run is executed, logged, stopped or extended, never what
# or how it learns. Every other field of TrainConfig is compared on --resume (resume_keys), so a
# new setting is compared unless it is added here.
RESUME_FREE = frozenset({
    "out", "resume", "resume_changed",
    "recipe",                         # its record; what it sets is compared setting by setting,
                                      # and recipe_hash says whether the recipe itself changed
    "max_steps", "epochs",            # extending a run is what --resume is for
    "skip_missing_shards",            # what it leaves out changes the selection digest, checked
    "prefetch", "save_every", "keep_checkpoints", "log_every", "cpu",
    "find_unused_parameters", "tensorboard", "progress", "log_level",
})


def resume_keys(cls=None) -> tuple[str, ...]:
    """The settings a --resume must not change (without --resume-changed): every field of the
    config dataclass except RESUME_FREE, in field order."""
    return tuple(f.name for f in dataclasses.fields(cls or TrainConfig)
                 if f.name not in RESUME_FREE)


# --help text of every setting (the flag is the name with dashes). A flag given on the command
# line wins over the YAML file (--config, or the stage's default file), which wins over the
# built-in default printed after each text.
HELP = {
    "model": "model spec: small | a model config JSON | laion:PATH.pt | hf:DIR | "
             "msclap:PATH.pth?version=2022|2023 | a checkpoint or run folder (README, Models)",
    "data": "(required) pipeline output folder (the --out of `pipeline build`): shards + "
            "manifests + catalog",
    "out": "(required) run folder: checkpoints/, final/, logs (created; an existing run needs "
           "--resume)",
    "init": "checkpoint or run folder to start from (stage B: the stage-A run)",
    "resume": "continue from OUT/checkpoints/step-* (the newest complete one); the data stream "
              "is replayed from that step, so a resumed run equals an unbroken one",
    "resume_changed": "let --resume change data or optimiser settings (recorded in "
                      "OUT/settings_history.json)",
    "split": "catalog split to train on",
    "where": "SQL predicate on the catalog's `samples` rows choosing the groups to train on, "
             "e.g. \"NOT list_has_any(labels, ['dog'])\" (see `pipeline query`)",
    "query_file": "file holding a SQL query that returns the group_key of the groups to train on",
    "templates": "caption template-id prefixes to draw captions from (e.g. paper); default: each "
                 "member's canonical caption",
    "skip_missing_shards": "train on the rest when shards named by the catalog are missing "
                           "(counted and logged) instead of stopping",
    "seed": "seed of the data order and of any random init",
    "max_steps": "optimizer steps to run (default: --epochs x steps per epoch)",
    "epochs": "passes over the selected groups, when --max-steps is not given",
    "groups_per_batch": "groups per rank and micro-batch (a stage-B group = forward, reversed "
                        "and overlay clips of one pair)",
    "grad_accum": "micro-batches per optimizer step (smooths the step; adds no negatives)",
    "lr": "peak learning rate (Adam)",
    "lr_gamma": "learning-rate factor per epoch (StepLR by nominal epochs)",
    "warmup_steps": "linear warm-up from lr/warmup_steps to lr over this many steps",
    "weight_decay": "Adam's weight decay (L2, added to the gradient)",
    "logit_scale_lr_mult": "learning rate of the learnable temperature as a multiple of --lr",
    "lr_mult": "learning rate per parameter group as PATTERN=FACTOR multiples of --lr, the "
               "first matching rule wins (patterns as --trainable; the temperature follows "
               "--logit-scale-lr-mult; '?PATTERN=FACTOR': only where such parameters train), "
               "e.g. 'text_branch.*=0.3'",
    "average_from": "export the mean of the trainable weights at every --average-every-th step "
                    "from this step on (weight averaging; the checkpoints keep the raw "
                    "trajectory); default: the last step's weights",
    "average_every": "steps between the snapshots that --average-from averages",
    "grad_clip": "max global gradient norm (0, or null in YAML: none)",
    "trainable": "parameter-name patterns to train (fnmatch; 'default' = the model's default "
                 "subset; '*' = everything; '?PATTERN': only where the model has such "
                 "parameters); default: the model's default subset",
    "audio_head": "add an order-aware audio head (every family; zero-initialised, so training "
                  "starts at the base): additive | additive_contrast (+ a term of how much the "
                  "halves differ, for before vs while) | moment_contrast (4 time tokens, where "
                  "each sound sits in time: order wherever the junction falls) | temporal | "
                  "pooled | a JSON object of head settings (models/heads.py)",
    "global_negatives": "negatives span all ranks (all_gather with gradient)",
    "lambda_a": "stage A loss weight (paper: total = lambda x InfoNCE)",
    "alpha_same_time": "stage B: weight of the same pair reversed as a negative",
    "alpha_cross_time": "stage B: weight of other pairs' reversed clips as negatives",
    "alpha_same_overlap": "stage B: weight of the same pair overlaid as a negative",
    "alpha_cross_overlap": "stage B: weight of other pairs' overlays as negatives",
    "beta": "stage B: weight of the text-to-audio direction",
    "retain_singles": "stage B: weight of the replayed single-sound loss that keeps zero-shot "
                      "classification (0: off)",
    "num_workers": "loader worker processes per rank (they decode the audio)",
    "shuffle_buffer": "groups held (as raw bytes) per worker for shuffling",
    "prefetch": "batches prefetched per worker",
    "save_every": "optimizer steps between checkpoints (0: only at the end)",
    "keep_checkpoints": "newest complete checkpoints kept",
    "log_every": "optimizer steps between log lines",
    "mixed_precision": "no | fp16 | bf16 (default: accelerate launch's setting)",
    "cpu": "force the CPU (with several processes: gloo DDP)",
    "find_unused_parameters": "DDP: allow trainable parameters that the loss does not reach",
    "tensorboard": "write TensorBoard logs under OUT/tb",
    "progress": "show a progress bar (quiet anyway when not on a terminal)",
    "log_level": "what the console log shows: debug | info (the run's steps; Accelerate's "
                 "own lines only from warning up) | warning | error; RUN_DIR/train.log keeps "
                 "info",
    "recipe": "the resolved recipe of --recipe (recorded; not a flag)",
    "recipe_hash": "hash of the recipe's build and stage sections (recorded; not a flag)",
}
# Fields written by `resolve` from --recipe: recorded, compared on resume, never flags.
RECORDED = ("recipe", "recipe_hash")


def head_value(text: str | dict | None):
    """--audio-head value: a name ("additive", "temporal", "pooled") or a JSON object of
    HeadSpec fields."""
    if isinstance(text, str) and text.lstrip().startswith("{"):
        try:
            return json.loads(text)
        except json.JSONDecodeError as e:
            raise ValueError(f"--audio-head {text!r} is not valid JSON: {e}") from None
    return text


def load_yaml(path: str | Path) -> dict:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"config file {path} does not exist (shipped configs: "
                                f"{', '.join(p.name for p in sorted(CONFIG_DIR.glob('*.yaml')))})")
    try:
        d = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise ValueError(f"{path} is not a readable YAML file: {' '.join(str(e).split())}") from None
    if not isinstance(d, dict):
        raise ValueError(f"{path}: a config is a mapping of setting: value, got {type(d).__name__}")
    return d


def model_family(spec: str) -> str:
    """The family of a model spec, as teminal.models.registry tells it (the registry reads a
    checkpoint folder's recorded family; nothing here looks inside configs)."""
    from teminal.models.registry import family_of

    return family_of(spec)


def default_config_path(stage: str, spec: str) -> Path:
    """small_<stage>.yaml for the small model; every pretrained family (laion, hf, msclap) takes
    the paper's settings, laion_<stage>.yaml."""
    return CONFIG_DIR / f"{'small' if _family(spec) == 'small' else 'laion'}_{stage}.yaml"


def _flag_type(tp):
    """(argparse type, nargs) for a dataclass field type."""
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    base = args[0] if args else tp
    if typing.get_origin(base) is list:
        return str, "+"
    return {"int": int, "float": float, "str": str}.get(getattr(base, "__name__", ""), str), None


PRECEDENCE = ("Precedence: a flag given here > the recipe's section for the model's family > "
              "its section for this stage > the YAML file (--config, or the stage's default "
              "file) > the built-in default shown in brackets.")


def recipe_help() -> str:
    from teminal.train.recipes import shipped

    return (f"a named recipe (train/configs/recipes/NAME.yaml) or a "
            f"recipe file: the method's settings for this stage and the model's family, applied "
            f"over the YAML file (flags still win); the run records it and its hash. Shipped: "
            f"{', '.join(shipped())} (python -m teminal.train.recipes lists them with what "
            f"they are; `show NAME` prints one as resolved)")


def build_parser(stage: str, description: str = "") -> argparse.ArgumentParser:
    # --data and --out are required; they are checked with every other setting (validate), so
    # a missing one is listed with the rest, and the usage line says so. No prefix matching:
    # `--max-step` is an error, not --max-steps.
    p = argparse.ArgumentParser(
        prog=f"train/{stage}.py", description=description, allow_abbrev=False,
        usage=f"train/{stage}.py --data OUT --out RUN_DIR [--model SPEC] [--recipe NAME] "
              f"[--config FILE] [options]",
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=PRECEDENCE)
    p.add_argument("--config", help="YAML file of settings (default: the stage's file for "
                                    "the model family, under train/configs/)")
    p.add_argument("--recipe", metavar="NAME|PATH", help=recipe_help())
    hints = typing.get_type_hints(TrainConfig)
    for f in dataclasses.fields(TrainConfig):
        if f.name in RECORDED:
            continue
        flag = "--" + f.name.replace("_", "-")
        text = f"{HELP[f.name]} [{f.default}]"
        if hints[f.name] is bool:
            p.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=text)
        elif f.name == "log_level":
            p.add_argument("-v", flag, choices=LOG_LEVELS, default=None, metavar="LEVEL",
                           help=text)
        else:
            tp, nargs = _flag_type(hints[f.name])
            p.add_argument(flag, type=tp, nargs=nargs, default=None,
                           metavar=f.name.upper(), help=text)
    return p


def to_flags(settings: dict) -> list[str]:
    """The command-line flags that set `settings` (the inverse of the parser: lists as several
    values, booleans as --x / --no-x); None values cannot be flags and are refused."""
    flags = []
    for key, value in settings.items():
        flag = "--" + key.replace("_", "-")
        if value is None or key in RECORDED:
            raise ValueError(f"{key} = {value!r} cannot be given as a flag")
        if isinstance(value, bool):
            flags.append(flag if value else "--no-" + flag[2:])
        elif isinstance(value, list):
            flags += [flag, *map(str, value)]
        else:
            flags += [flag, str(value)]
    return flags


def resolve(stage: str, argv: list[str] | None = None, description: str = "") -> TrainConfig:
    """Defaults < YAML (--config or the stage's default) < the recipe's stage section < its
    family section < flags given on the command line."""
    ns = vars(build_parser(stage, description).parse_args(argv))
    config_path, recipe = ns.pop("config"), ns.pop("recipe")
    flags = {k: v for k, v in ns.items() if v is not None}
    merged = load_yaml(config_path) if config_path else {}
    spec = flags.get("init") or merged.get("init") or flags.get("model") or \
        merged.get("model") or "small"
    if recipe:  # before the default file: a recipe that does not run this stage says so
        from teminal.train.recipes import stage_settings

        settings, record, digest = stage_settings(recipe, stage, _family(spec))
    path = Path(config_path) if config_path else default_config_path(stage, spec)
    if not config_path:
        merged = load_yaml(path)
    if recipe:
        merged = {**merged, **settings, "recipe": record, "recipe_hash": digest}
    cfg = TrainConfig.from_dict({**merged, **flags}, source=str(path))
    return cfg.validate()


def _family(spec: str) -> str:
    """model_family, its errors as the settings error of --model/--init."""
    from teminal.models.errors import ModelSpecError

    try:
        return model_family(spec)
    except ModelSpecError as e:
        raise ValueError(f"--model/--init {spec!r}: {e}") from None


def present_patterns(patterns: list[str] | None, names) -> list[str] | None:
    """`patterns` with the optional ones (`?PATTERN`) settled against the parameter `names`:
    kept without the mark where they match a name, dropped where they match none (a recipe
    written for two models of a family). Plain patterns pass unchanged: one that matches
    nothing is still an error where it is applied."""
    if patterns is None:
        return None
    from teminal.models.trainable import select

    names = list(names)
    out = []
    for pattern in patterns:
        if not pattern.startswith(OPTIONAL):
            out.append(pattern)
        elif select(names, [pattern[1:]])[0]:
            out.append(pattern[1:])
    return out


def present_rules(rules: list[str] | None, names) -> list[str] | None:
    """--lr-mult rules with the optional ones (`?PATTERN=FACTOR`) settled against the trainable
    parameter `names` as present_patterns settles patterns."""
    if rules is None:
        return None
    from teminal.models.trainable import select

    names = list(names)
    return [rule[1:] if rule.startswith(OPTIONAL) else rule for rule in rules
            if not rule.startswith(OPTIONAL) or select(names, [rule[1:].rpartition("=")[0]])[0]]


def dump(cfg: TrainConfig, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))


def differences(a: dict, b: dict, keys: typing.Iterable[str]) -> dict:
    """{key: (a, b)} for the keys whose values differ."""
    return {k: (a.get(k), b.get(k)) for k in keys if json.dumps(a.get(k)) != json.dumps(b.get(k))}
