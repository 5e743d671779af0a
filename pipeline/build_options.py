"""`pipeline build`'s options, generated from `BuildConfig` (and its `ComposeConfig`) as
training's flags are from `TrainConfig` (teminal.train.run_config): one entry per setting, its
default the dataclass's, its choices from the registry that defines them. The CLI applies
`build_options` to its command and turns the parsed values into a BuildConfig with
`build_config`; the dataclasses validate them as they do for any caller.

A BuildConfig field without an entry here (or in NOT_OPTIONS) fails the test that every field
is reachable (tests/pipeline/test_cli.py), so a new setting cannot miss its option.

A build remembers its settings: OUT/manifests/parts/build.json records the identity
(`BuildConfig.identity`) and the root. `build_config(values, given, recorded)` takes a recorded
setting wherever its option was not given, so extending or rebuilding a build takes `--out`
and what changes; `record_changes` says which changes a finished or unfinished build in OUT
accepts (adding stages or splits) and which would make another build (refused, naming the
option); `build_flags` writes a config back as the flags that make it, for the commands that
error messages print.
"""
from __future__ import annotations

import dataclasses
import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import click

from teminal.manifests.shard_codec import CODECS
from teminal.pipeline.captions import LABEL_TEMPLATE_SETS
from teminal.pipeline.compose import PAD_POLICIES, ComposeConfig, timing_text
from teminal.pipeline.config import BuildConfig
from teminal.pipeline.executors import EXECUTORS
from teminal.pipeline.sources import DATASETS

COMPOSE = "compose."   # a field of BuildConfig.compose (a ComposeConfig)


@dataclass(frozen=True)
class BuildOption:
    """One option of `pipeline build`: the setting it fills (`field`, "compose.<name>" for the
    compose config), its help text, how its text becomes the field's value (`parse`, given the
    text and every parsed value; None: click's type is enough) and how the field's default is
    written as that text (`shown`)."""
    field: str
    help: str
    parse: Callable[[str, dict], object] | None = None
    shown: Callable[[object], object] | None = None
    choices: tuple[str, ...] | None = None
    type: object = None                 # a click type; default: that of the default
    short: str | None = None            # e.g. "-j"
    required: bool = False
    show_default: bool = True

    @property
    def name(self) -> str:
        return self.field.removeprefix(COMPOSE)

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    def default(self):
        if self.required:
            return None
        owner = ComposeConfig if self.field.startswith(COMPOSE) else BuildConfig
        value = next(f for f in dataclasses.fields(owner) if f.name == self.name)
        value = value.default if value.default is not dataclasses.MISSING else value.default_factory()
        return self.shown(value) if self.shown else value

    def click_option(self):
        default = self.default()
        kind = (click.Choice(self.choices) if self.choices else self.type if self.type
                else None if default is None or isinstance(default, bool) else type(default))
        names = [self.flag] + ([self.short] if self.short else [])
        if isinstance(default, bool):
            return click.option(*names, self.name, is_flag=True, help=self.help)
        return click.option(*names, self.name, default=default, type=kind,
                            required=self.required, help=self.help,
                            show_default=self.show_default and default is not None)


# -- parsing of the options whose text is not the field's value ----------------------------------

def parse_splits(text: str | None, value: Callable[[str], object] = str) -> dict[str, list] | None:
    """"test=5,val=4,train=1,2,3" -> {"test": [5], "val": [4], "train": [1, 2, 3]}.

    A bare value after a comma extends the split named before it; ";" separates as well."""
    if not text:
        return None
    out: dict[str, list] = {}
    current = None
    for token in re.split(r"[,;]", text):
        token = token.strip()
        if not token:
            continue
        if "=" in token:
            current, _, token = (t.strip() for t in token.partition("="))
            if not current or current in out:
                raise ValueError(f"--splits {text!r}: split name {current!r} empty or repeated")
            out[current] = []
        if current is None:
            raise ValueError(f"--splits {text!r}: expected name=value first, e.g. test=5,val=4,train=1,2,3")
        if token:
            try:
                out[current].append(value(token))
            except ValueError:
                raise ValueError(f"--splits {text!r}: bad value {token!r} for split {current!r}") from None
    return out


def parse_groups(text: str | None) -> int | dict[str, int] | None:
    """"2000" -> 2000; "train=2000,val=200,test=200" -> {...}; None/"" -> None."""
    if not text:
        return None
    text = text.strip()
    try:
        if "=" not in text:
            return int(text)
        out = {}
        for item in text.split(","):
            name, _, n = item.partition("=")
            if name.strip() in out or not name.strip():
                raise ValueError
            out[name.strip()] = int(n)
        return out
    except ValueError:
        raise ValueError(f"--groups {text!r}: expected N or split=N,split=N with each split "
                         f"once (e.g. train=2000,val=200)") from None


def parse_snr_range(text: str) -> tuple[float, float]:
    """"-5,5" -> (-5.0, 5.0); anything else names the option and the expected form."""
    parts = [p.strip() for p in str(text).split(",")]
    try:
        if len(parts) != 2:
            raise ValueError
        lo, hi = float(parts[0]), float(parts[1])
    except ValueError:
        raise ValueError(f"--snr-range {text!r}: expected two numbers LOW,HIGH in dB, for "
                         f"example -5,5 (finite, -60..60, LOW <= HIGH)") from None
    return lo, hi


def parse_range(option: str, text: str) -> tuple[float, float]:
    """"0.3" -> (0.3, 0.3); "0.3,0.7" -> (0.3, 0.7): a fixed value or a LOW,HIGH range drawn
    per group (ComposeConfig checks the values)."""
    parts = [p.strip() for p in str(text).split(",")]
    try:
        if len(parts) not in (1, 2):
            raise ValueError
        values = [float(p) for p in parts]
    except ValueError:
        raise ValueError(f"{option} {text!r}: expected a number X or two numbers LOW,HIGH, for "
                         f"example 0.3 or 0.2,0.8") from None
    return values[0], values[-1]


def parse_part(text: str | None) -> tuple[int, int]:
    if not text:
        return (0, 1)
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if not m:
        raise ValueError(f"--part {text!r}: expected i/n, e.g. 0/4")
    return int(m.group(1)), int(m.group(2))


def splits_text(splits) -> str:
    """{"test": [5], "train": [1, 2, 3]} -> "test=5,train=1,2,3" (what parse_splits reads)."""
    return ",".join(f"{name}={','.join(str(v) for v in units)}" for name, units in splits.items())


def groups_text(groups) -> str:
    """2000 -> "2000"; {"train": 6, "val": 2} -> "train=6,val=2" (what parse_groups reads)."""
    if isinstance(groups, dict):
        return ",".join(f"{name}={n}" for name, n in groups.items())
    return str(groups)


def _timing(flag: str):
    return lambda text, values: parse_range(flag, text)


def _pair(value) -> str:
    return ",".join(f"{v:g}" for v in value)


# -- the options, in --help order ------------------------------------------------------------------

OPTIONS: tuple[BuildOption, ...] = (
    BuildOption("dataset", choices=tuple(sorted(DATASETS)), help=(
        "Source dataset reader: esc50 (labels), audiocaps or clotho (captions; composite "
        "captions join the clips' captions).")),
    BuildOption("root", type=click.Path(file_okay=False, path_type=Path),
                parse=lambda text, values: str(text) if text else None, help=(
        "Dataset folder. Default: $TEMINAL_DATA/<dataset>, else ./data/ESC-50-master, "
        "./data/audiocaps or ./data/clotho.")),
    BuildOption("out", type=click.Path(file_okay=False, path_type=Path), required=True,
                parse=lambda text, values: str(text), help=(
        "Output folder: OUT/shards/<stage>/<split>-NNNNNN.tar and OUT/manifests/.")),
    BuildOption("stages", shown=",".join,
                parse=lambda text, values: tuple(s.strip().lower() for s in text.split(",")
                                                 if s.strip()), help=(
        "Stages to build: a = {single, double}, b = {forward, reversed, overlay}.")),
    BuildOption("splits", type=str,
                parse=lambda text, values: parse_splits(
                    text, DATASETS[values["dataset"]].split_values), help=(
        "Split -> source units. ESC-50 folds, default test=5,val=4,train=1,2,3; "
        "AudioCaps/Clotho: their official splits by default (Clotho development, "
        "validation, evaluation = train, val, test), or e.g. train=train,val;test=test.")),
    BuildOption("groups", type=str, parse=lambda text, values: parse_groups(text), help=(
        "Groups (pairs) per split and stage: N for train, val/test scaled by their clip count; "
        "or explicit train=N,val=N,test=N. Default: --groups-per-clip.")),
    BuildOption("groups_per_clip", help=(
        "Without --groups: each split gets this many groups per clip (each clip then appears "
        "in about twice as many groups per stage).")),
    BuildOption("seed", help="Seed of pairing, SNRs, augmentation."),
    BuildOption("workers", short="-j", help=(
        "Processes (with --executor ray and no --ray-address: the CPUs of the local Ray "
        "instance); output is byte-identical for any number.")),
    BuildOption("executor", choices=EXECUTORS, help=(
        "Where shards render: local processes, or one Ray task per shard (needs pip install "
        "-e '.[ray]'). With a Ray cluster, --root and --out must be on a filesystem every node "
        "sees, with the same teminal installed on every node.")),
    BuildOption("ray_address", type=str, help=(
        "--executor ray: the cluster to join (e.g. auto, or HEAD:6379); default: start a local "
        "Ray instance with --workers CPUs.")),
    BuildOption("retries", help=(
        "Extra attempts of a shard that fails; then it is recorded as failed, the other shards "
        "are kept and the exit status is 1 (rerun to retry it).")),
    BuildOption("shard_size", help="Groups per shard."),
    BuildOption("compose.sample_rate", help=(
        "Rate of the rendered audio (LAION-CLAP: 48000; a small CPU model: 16000).")),
    BuildOption("compose.clip_seconds", help=(
        "Length of every rendered sample; concatenations get two slots split at --junction.")),
    BuildOption("codec", choices=tuple(CODECS), help=(
        "Member encoding: FLAC, or raw int16 .npy (about 2.3x bytes, ~50x faster to decode).")),
    BuildOption("compose.template_set", choices=LABEL_TEMPLATE_SETS, help=(
        "Caption templates (captioned datasets use their captioned flavour, e.g. \"<caption "
        "a>, followed by <caption b>\").")),
    BuildOption("name_template", type=str, help=(
        "AudioCaps/Clotho: an extra audio file-name form tried first, e.g. "
        "\"{youtube_id}.{ext}\" (AudioCaps fields: youtube_id, start_time, end_time, "
        "audiocap_id, ext; Clotho: file_name, stem, ext).")),
    BuildOption("compose.augment", type=str, parse=lambda text, values: text or None, help=(
        "audiomentations chain on source parts, e.g. gain,pitch,stretch,noise (seeded per "
        "group, parameters recorded). Default: off.")),
    BuildOption("compose.snr_range", shown=_pair,
                parse=lambda text, values: parse_snr_range(text), help=(
        "Overlay SNR range in dB (level of a over b), drawn per group.")),
    BuildOption("compose.junction", shown=timing_text, parse=_timing("--junction"), help=(
        "Where the second event of double/forward starts, as a fraction of the clip: X, or "
        "LOW,HIGH drawn per group; reversed mirrors it (1 - X), so each event keeps its "
        "length. 0.5 is the paper's midpoint.")),
    BuildOption("compose.gap", shown=timing_text, parse=_timing("--gap"), help=(
        "Seconds of silence before the second event of a concatenation: X, or LOW,HIGH drawn "
        "per group. Each event keeps at least 0.5 s (0.1 of the clip if shorter).")),
    BuildOption("compose.overlay_start", shown=timing_text, parse=_timing("--overlay-start"),
                help=(
        "Where an overlay's second sound starts, as a fraction of the clip: X, or LOW,HIGH "
        "drawn per group; it then plays to the end (a partial overlap).")),
    BuildOption("compose.pad", choices=PAD_POLICIES, help=(
        "Padding of short parts of singles and overlays (concatenations zero-pad).")),
    BuildOption("compose.target_db", help=(
        "Loudness of every part before mixing (dBFS RMS); part of the build id.")),
    BuildOption("compose.ceiling", help=(
        "Peak limit of every composite (linear full scale); part of the build id.")),
    BuildOption("part", type=str, shown=lambda value: None,
                parse=lambda text, values: parse_part(text), help=(
        "i/n: build only shards i, i+n, ... (fan a build out over machines; the catalog is "
        "written when all parts are done, or with `pipeline catalog`).")),
    BuildOption("overwrite", help="Replace a different build already in OUT (default: refuse)."),
    BuildOption("keep_cache", help="Keep the decoded source pool (OUT/.cache) after the build."),
)
# BuildConfig / ComposeConfig fields that are not options: what the build sets itself
NOT_OPTIONS = frozenset({"compose", "compose.key_prefix"})


def build_options(command):
    """Decorate a click command with every option of OPTIONS, in --help order."""
    for option in reversed(OPTIONS):
        command = option.click_option()(command)
    return command


def build_config(values: dict, given: set[str] | None = None,
                 recorded: dict | None = None) -> BuildConfig:
    """The BuildConfig of parsed option values (keyed by field name, e.g. "sample_rate");
    bad text is a ValueError naming the option, bad values BuildConfig's own.

    `recorded`: the settings a build in OUT was made with (build.json's "config"); each of them
    applies where its option is not among `given` (the options given on the command line)."""
    taken = {name: value for name, value in recorded_values(recorded).items()
             if name not in (given or ())} if recorded else {}
    texts = dict(values, **({"dataset": taken["dataset"]} if "dataset" in taken else {}))
    top, compose = {}, {}
    for option in OPTIONS:
        if option.name in taken:
            value = taken[option.name]
        else:
            value = values[option.name]
            if option.parse is not None:
                value = option.parse(value, texts)
        (compose if option.field.startswith(COMPOSE) else top)[option.name] = value
    compose["key_prefix"] = top["dataset"]
    return BuildConfig(**top, compose=ComposeConfig(**compose))


# -- a build's recorded settings -------------------------------------------------------------------

# The options a build records (its identity and its root); the others are how this run goes
# (--workers, --executor, --part, --retries, --overwrite, --keep-cache) and are never taken from
# the record.
RUN_ONLY = frozenset({"out", "workers", "executor", "ray_address", "retries", "part",
                      "overwrite", "keep_cache"})
RECORDED = tuple(o.name for o in OPTIONS if o.name not in RUN_ONLY)


def recorded_values(config: dict) -> dict:
    """build.json's "config" (BuildConfig.identity() plus "root") as option values, keyed by
    option name: what `build_config` takes where no flag is given."""
    out = {name: config[name] for name in ("dataset", "groups", "groups_per_clip", "seed",
                                           "shard_size", "codec") if name in config}
    out["root"] = config.get("root")
    out["name_template"] = config.get("name_template")
    if "stages" in config:
        out["stages"] = tuple(config["stages"])
    if "splits" in config:
        out["splits"] = ({k: list(v) for k, v in config["splits"].items()}
                         if config["splits"] else None)
    if "compose" in config:
        compose = ComposeConfig.from_dict(config["compose"])
        out.update({o.name: getattr(compose, o.name) for o in OPTIONS
                    if o.field.startswith(COMPOSE)})
    return {name: value for name, value in out.items() if name in RECORDED}


def value_text(name: str, value) -> str:
    """A setting's value as its option takes it (--stages a,b; --splits test=5,train=1,2,3;
    None, where a setting has no value, as "", which its option reads back as None)."""
    if value is None:
        return ""
    if name == "stages":
        return ",".join(value)
    if name == "splits":
        return splits_text(value)
    if name == "groups":
        return groups_text(value)
    if name == "snr_range":
        return _pair(value)
    if name in ("junction", "gap", "overlay_start"):
        return timing_text(value)
    return str(value)


def _field_value(config: BuildConfig, option: BuildOption):
    owner = config.compose if option.field.startswith(COMPOSE) else config
    return getattr(owner, option.name)


def build_flags(config: BuildConfig, out: str | None = None) -> list[str]:
    """The `pipeline build` arguments that make `config`'s build in a folder with no record:
    --out, --dataset, --root, then every recorded setting that is not its default."""
    defaults = BuildConfig(out="-", dataset=config.dataset)
    args = ["--out", str(out or config.out), "--dataset", config.dataset]
    for option in OPTIONS:
        if option.name not in RECORDED or option.name == "dataset":
            continue
        value = _field_value(config, option)
        if value is None or value == _field_value(defaults, option):
            continue
        args += [option.flag, value_text(option.name, value)]
    return args


def changed_args(recorded: dict, config: BuildConfig, root: Path) -> list[str]:
    """The `pipeline build` arguments that turn the build recorded in config's OUT into
    `config` (the recorded settings fill in the rest): --out and each option whose value
    differs, --root when the dataset folder `root` is not the recorded one."""
    old, new = recorded_values(recorded), recorded_values(config.identity())
    args = ["--out", str(config.out)]
    if str(Path(root).resolve()) != old.get("root"):
        args += ["--root", str(root)]
    for option in OPTIONS:
        name = option.name
        if name in RECORDED and name != "root" and not _same(old.get(name), new.get(name)):
            args += [option.flag, value_text(name, new.get(name))]
    return args


def command(args: list[str]) -> str:
    """`pipeline build ARGS` as one line a shell runs as printed."""
    return shlex.join(["pipeline", "build", *args])


@dataclass(frozen=True)
class RecordChanges:
    """How a config differs from the build recorded in its OUT: `extends` adds stages or
    splits to it (the stages and splits it has stay as they are); `refused` would make another
    build (an option's value changed, a stage or split dropped). Each entry reads
    "--option OLD -> NEW"."""
    refused: tuple[str, ...] = ()
    extends: tuple[str, ...] = ()

    @property
    def same(self) -> bool:
        return not self.refused and not self.extends


def record_changes(recorded: dict, config: BuildConfig) -> RecordChanges:
    """Compare the recorded identity (build.json's "config") with `config`'s, option by option."""
    old, new = recorded_values(recorded), recorded_values(config.identity())
    old.pop("root", None)
    new.pop("root", None)
    refused, extends = [], []

    def change(name: str) -> str:
        flag = "--" + name.replace("_", "-")
        shown = [value_text(name, v) if v is not None else "(default)"
                 for v in (old.get(name), new.get(name))]
        return f"{flag} {shown[0]} -> {shown[1]}"

    for name in RECORDED:
        a, b = old.get(name), new.get(name)
        if name in ("splits", "groups") or _same(a, b):
            continue
        if name == "stages" and set(b) > set(a):
            extends.append(change(name))
        else:
            refused.append(change(name))
    for name, grows in _split_changes(old, new, config):
        (extends if grows else refused).append(change(name))
    return RecordChanges(tuple(refused), tuple(extends))


def _same(a, b) -> bool:
    return json_text(a) == json_text(b)


def json_text(value) -> str:
    import json

    return json.dumps(value, sort_keys=True, default=list)


def _split_changes(old: dict, new: dict, config: BuildConfig) -> list[tuple[str, bool]]:
    """(option, whether it only adds) for --splits and --groups: a build may gain splits (the
    ones it has keep their source units) and groups for splits that had none; any other change
    of either moves the groups it has."""
    out = []
    a, b = old.get("splits"), new.get("splits")
    if not _same(a, b):
        grows = (a is not None and b is not None and
                 all(name in b and _same(list(units), list(b[name])) for name, units in a.items()))
        out.append(("splits", grows))
    ga, gb = old.get("groups"), new.get("groups")
    had = set(a) if a else set(DATASETS[config.dataset].default_splits)
    if not _same(ga, gb):
        # a count may change only where nothing was built: a new split, or one that had 0
        grows = (isinstance(ga, dict) and isinstance(gb, dict) and
                 all(name in gb for name in ga) and
                 all(name not in had or ga.get(name) == 0
                     for name in gb if gb[name] != ga.get(name)))
        out.append(("groups", grows))
    elif isinstance(gb, int) and "train" not in had and "train" in (b or had):
        out.append(("groups", False))   # N groups are train's now: the other splits rescale
    return out


def extend_command(out, stage: str | None = None) -> str | None:
    """The command that adds `stage` to the build in OUT (its recorded settings, every stage it
    has plus this one), or None when OUT holds no build record (a merged catalog)."""
    from teminal.pipeline.layout import read_build_record

    try:
        record = read_build_record(out)
    except ValueError:
        return None
    if record is None:
        return None
    stages = sorted(set(record["config"].get("stages", ())) | ({stage} if stage else set()))
    return command(["--out", str(out), "--stages", ",".join(stages)])


def add_stage_hint(out, stage: str) -> str:
    """How to give OUT's catalog shards of `stage`, as commands made from its record: extend its
    build, or each build a merged catalog merges and then merge again; in words when OUT holds
    no record of how it was made."""
    from teminal.manifests.vocabulary import commands_text, merge_command, merged_inputs

    add = extend_command(out, stage)
    if add:
        return f"`{add}` adds stage {stage} to its build"
    inputs, merge = merged_inputs(out), merge_command(out)
    extend = [extend_command(i, stage) for i in inputs or ()]
    if merge and all(extend):
        return f"{commands_text([*extend, merge])} add stage {stage} to each build it merges"
    return (f"{out} holds no record of the build that wrote it: build it again including stage "
            f"{stage}")


def add_split_command(out, split: str) -> str | None:
    """The command that gives the build in OUT groups in `split` where its --groups gave that
    split none (the smallest count it gives another split); None when the record cannot tell
    (no such split in the build, or no build record: a merged catalog)."""
    from teminal.pipeline.layout import read_build_record

    try:
        record = read_build_record(out)
    except ValueError:
        return None
    groups = (record or {}).get("config", {}).get("groups")
    if not (isinstance(groups, dict) and groups.get(split) == 0 and any(groups.values())):
        return None
    count = min(n for n in groups.values() if n)
    return command(["--out", str(out), "--groups", groups_text({**groups, split: count})])
