"""Named recipes: a method's settings for every stage and model family, written once.

A recipe is a YAML file, `train/configs/recipes/NAME.yaml` for the shipped ones:

    description: what it is and why (required)
    extends: OTHER            # optional: OTHER's settings, then this file's
    build: {junction: [0.3, 0.7], template_set: extended}   # its training data's `pipeline build`
    pretrain: {}              # one section per stage it runs: TrainConfig settings
    stage_a: {audio_head: additive_contrast}
    stage_b: {retain_singles: 2}
    families:                 # overrides per model family (teminal.models.registry.family_of)
      small: {pretrain: {}, stage_b: {trainable: [...]}}
      laion: {stage_b: {trainable: [...]}}

- A stage runs when the recipe has its section, at the top or in the model's family section
  (`{}`: the stage file's settings as they are). A recipe with a `families:` section runs only
  on the families it names; without one, on every family.
- `extends` merges section by section and key by key: a key the child sets wins, lists
  replace (never append), and a section or family set to null drops the parent's (`stage_a:
  null`: this recipe runs no stage A). Chains are followed to their root; a cycle or an
  unknown name is one error naming the chain.
- Settings resolve as: dataclass defaults < the stage's YAML (--config, or the family's default
  file) < the recipe's stage section < its family section < command-line flags
  (teminal.train.run_config.resolve).
- A pattern of `trainable` or `lr_mult` written `?PATTERN` applies where the model has such
  parameters and is dropped where it has none (the small family's two models, small and
  small-minilm, name their text towers differently); a plain pattern that matches nothing
  stops the run, as on the command line.
- `build:` holds `pipeline build` options that decide what the training data is (timing,
  wordings, loudness); `build_flags` turns it into flags. The demo and the ablation build
  their data from it; the data's format (rate, codec, group counts) is theirs.

A run records the resolved recipe (`TrainConfig.recipe`: name, extends chain, family, every
section) and `recipe_hash`, the hash of the settings the run took from it (its build section and
the stage's section): stages shared by several recipes have one hash, and a resume compares it.

    python -m teminal.train.recipes                       # the shipped recipes
    python -m teminal.train.recipes show NAME [--family F] # a recipe as resolved
    python -m teminal.train.recipes build-flags NAME      # its `pipeline build` flags
"""
from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

RECIPE_DIR = Path(__file__).parent / "configs" / "recipes"
STAGES = ("pretrain", "stage_a", "stage_b")
FAMILIES = ("small", "laion", "hf", "msclap")  # teminal.models.registry.FAMILIES (tested)
TOP_KEYS = ("description", "extends", "build", *STAGES, "families")
# What a run is (which model, data, folder) and how it resumes: the command line's, never a
# recipe's. The record fields are written by resolution itself.
NOT_IN_RECIPES = frozenset({"model", "data", "out", "init", "resume", "resume_changed",
                            "recipe", "recipe_hash"})
# `pipeline build` options that decide what the training data is; its format (rate, length,
# codec, splits, group counts) and the machinery belong to whoever builds it.
BUILD_KEYS = ("template_set", "name_template", "augment", "snr_range", "junction", "gap",
              "overlay_start", "pad", "target_db", "ceiling")


class RecipeError(ValueError):
    """A recipe that cannot be used: one line naming the recipe, its file and the fix."""


@dataclass
class Recipe:
    """One recipe with its `extends` chain merged in (family sections not yet applied)."""
    name: str
    path: Path
    chain: list[str]                     # the recipes it extends, nearest first
    description: str
    build: dict
    stages: dict[str, dict]              # stage -> settings (top level)
    families: dict[str, dict] | None     # family -> {stage: settings}; None: every family

    def for_family(self, family: str) -> "Resolved":
        if self.families is not None and family not in self.families:
            raise RecipeError(
                f"recipe {self.name!r} ({self.path}) runs on the families "
                f"{', '.join(self.families) or '(none)'}, not {family}: add a `families: "
                f"{{{family}: {{...}}}}` section with {family}'s parameter names, or pick another "
                f"recipe (`python -m teminal.train.recipes`)")
        own = (self.families or {}).get(family) or {}
        stages = {s: {**self.stages.get(s, {}), **own.get(s, {})}
                  for s in STAGES if s in self.stages or s in own}
        return Resolved(self.name, self.path, self.chain, family, self.description,
                        dict(self.build), stages)


@dataclass
class Resolved:
    """A recipe as it applies to one model family: what a run records."""
    name: str
    path: Path
    chain: list[str]
    family: str
    description: str
    build: dict
    stages: dict[str, dict] = field(default_factory=dict)

    def section(self, stage: str) -> dict:
        if stage not in self.stages:
            runs = ", ".join(self.stages) or "no stage"
            raise RecipeError(f"recipe {self.name!r} runs no {stage} on the {self.family} "
                              f"family (it runs {runs}; {self.path})")
        return dict(self.stages[stage])

    def stage_hash(self, stage: str) -> str:
        """The hash of what a run of `stage` takes from the recipe: the build and the stage's
        settings (not the name, the description or how the chain is split into files)."""
        return settings_hash({"build": self.build, stage: self.section(stage)})

    def record(self) -> dict:
        """The resolved recipe as a run records it (TrainConfig.recipe)."""
        out = {"name": self.name, "extends": list(self.chain), "family": self.family,
               "description": self.description, "build": dict(self.build)}
        if not _shipped_path(self.path):
            out["file"] = str(self.path)
        out.update({s: dict(v) for s, v in self.stages.items()})
        return out


def settings_hash(obj) -> str:
    """16 hex digits of the sha256 of `obj` as canonical JSON (sorted keys)."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def shipped() -> list[str]:
    return sorted(p.stem for p in RECIPE_DIR.glob("*.yaml"))


def _shipped_path(path: Path) -> bool:
    return path.resolve().parent == RECIPE_DIR.resolve()


def locate(ref: str, near: Path | None = None) -> Path | None:
    """The file a recipe reference names: a path to a YAML file, else NAME.yaml beside the
    recipe that extends it (`near`), else a shipped recipe; None when there is none."""
    path = Path(ref).expanduser()
    if path.suffix in (".yaml", ".yml"):
        for candidate in ([near / path] if near and not path.is_absolute() else []) + [path]:
            if candidate.is_file():
                return candidate
        return None
    for folder in ([near] if near else []) + [RECIPE_DIR]:
        candidate = folder / f"{ref}.yaml"
        if candidate.is_file():
            return candidate
    return None


def load(ref: str | Path) -> Recipe:
    """The recipe `ref` names (a shipped name or a YAML path), its `extends` chain merged."""
    files: list[tuple[str, Path, dict]] = []
    names: list[str] = []
    ref, near = str(ref), None
    while True:
        path = locate(ref, near)
        if path is None:
            if not files:
                raise RecipeError(f"unknown recipe {ref!r}: no file {ref} and no "
                                  f"{RECIPE_DIR / (ref + '.yaml')}; shipped recipes: "
                                  f"{', '.join(shipped())}")
            raise RecipeError(f"recipe {files[-1][0]!r} ({files[-1][1]}) extends unknown recipe "
                              f"{ref!r} (chain {' -> '.join([*names, ref])}); shipped recipes: "
                              f"{', '.join(shipped())}")
        name = path.stem
        key = str(path.resolve())
        if key in [str(p.resolve()) for _, p, _ in files]:
            raise RecipeError(f"recipe chain {' -> '.join([*names, name])} is a cycle: remove "
                              f"one `extends` ({path})")
        raw = _read(path)
        files.append((name, path, raw))
        names.append(name)
        if raw.get("extends") is None:
            break
        ref, near = str(raw["extends"]), path.parent
    merged: dict = {}
    for _, _, raw in reversed(files):
        merged = _merge(merged, raw)
    name, path, _ = files[0]
    return Recipe(name, path, names[1:], merged["description"], merged["build"],
                  {s: merged[s] for s in STAGES if merged[s] is not None},
                  merged.get("families"))


def resolve(ref: str | Path, family: str) -> Resolved:
    return load(ref).for_family(family)


def stage_settings(ref: str | Path, stage: str, family: str) -> tuple[dict, dict, str]:
    """(the settings the recipe gives `stage` on `family`, the run's record, its hash)."""
    resolved = resolve(ref, family)
    return resolved.section(stage), resolved.record(), resolved.stage_hash(stage)


def build_flags(build: dict) -> list[str]:
    """`pipeline build` flags of a recipe's build section, in a fixed order ([LOW, HIGH] ->
    `LOW,HIGH`)."""
    flags = []
    for key in sorted(build):
        value = build[key]
        if value is None:
            continue
        text = ",".join(_num(v) for v in value) if isinstance(value, list) else _num(value)
        flags += ["--" + key.replace("_", "-"), text]
    return flags


def _num(value) -> str:
    return repr(value) if isinstance(value, float) else str(value)


# ---- reading and checking one file ----------------------------------------------------------

def _read(path: Path) -> dict:
    where = f"recipe {path.stem!r} ({path})"
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError, UnicodeDecodeError) as e:
        raise RecipeError(f"{where} is not a readable YAML file: {' '.join(str(e).split())}"
                          ) from None
    if not isinstance(raw, dict):
        raise RecipeError(f"{where}: a recipe is a mapping (description:, extends:, build:, "
                          f"{', '.join(STAGES)}:, families:), got {type(raw).__name__}")
    unknown = sorted(set(raw) - set(TOP_KEYS))
    if unknown:
        raise RecipeError(f"{where}: unknown key(s) {unknown}; a recipe has {', '.join(TOP_KEYS)}"
                          f" (settings go inside a stage section)")
    if not isinstance(raw.get("description"), str) or not raw["description"].strip():
        raise RecipeError(f"{where}: `description:` (what it is and why) is required")
    if "extends" in raw and not isinstance(raw["extends"], (str, type(None))):
        raise RecipeError(f"{where}: `extends:` names one recipe, got {raw['extends']!r}")
    out = {"description": " ".join(raw["description"].split()), "extends": raw.get("extends")}
    if "build" in raw:
        out["build"] = _check_build(raw["build"], where)
    for stage in STAGES:
        if stage in raw:
            out[stage] = _check_section(raw[stage], f"{where}: {stage}")
    if "families" in raw:
        out["families"] = _check_families(raw["families"], where)
    return out


def _check_families(families, where: str) -> dict:
    if not isinstance(families, dict):
        raise RecipeError(f"{where}: `families:` maps a family ({', '.join(FAMILIES)}) to its "
                          f"stage sections, got {families!r}")
    out = {}
    for fam, sections in families.items():
        if fam not in FAMILIES:
            raise RecipeError(f"{where}: unknown family {fam!r} in `families:`; families: "
                              f"{', '.join(FAMILIES)}")
        if sections is None:
            out[fam] = None
            continue
        if not isinstance(sections, dict) or set(sections) - set(STAGES):
            raise RecipeError(f"{where}: families.{fam} holds stage sections ({', '.join(STAGES)})"
                              f", got {sections!r}")
        out[fam] = {s: _check_section(v, f"{where}: families.{fam}.{s}")
                    for s, v in sections.items()}
    return out


def _check_build(build, where: str) -> dict:
    if build is None:
        return {}
    if not isinstance(build, dict):
        raise RecipeError(f"{where}: `build:` maps `pipeline build` options to values, got "
                          f"{build!r}")
    for key, value in build.items():
        if key not in BUILD_KEYS:
            raise RecipeError(f"{where}: build.{key} is not a recipe build setting; they are "
                              f"{', '.join(BUILD_KEYS)} (the data's rate, codec and group "
                              f"counts are the builder's)")
        pair = isinstance(value, list) and len(value) == 2 and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
        if not (pair or value is None or isinstance(value, (str, int, float))
                and not isinstance(value, bool)):
            raise RecipeError(f"{where}: build.{key} must be a value or [LOW, HIGH], got "
                              f"{value!r}")
    return dict(build)


def _check_section(section, where: str) -> dict | None:
    """A stage section's settings, checked against TrainConfig (names, types, ranges) and
    normalised (ints of float settings as floats, a head's mapping as JSON), so that equal
    settings hash equal."""
    from teminal.train.run_config import TrainConfig, bounds

    if section is None:
        return None
    if not isinstance(section, dict):
        raise RecipeError(f"{where} is a mapping of settings ({{}} for the stage file's own), "
                          f"got {section!r}")
    hints = typing.get_type_hints(TrainConfig)
    allowed = sorted(set(hints) - NOT_IN_RECIPES)
    out = {}
    for key, value in section.items():
        if key in NOT_IN_RECIPES:
            raise RecipeError(f"{where}.{key}: which model, data and run folder are the command "
                              f"line's (--{key.replace('_', '-')}), not a recipe's")
        if key not in hints:
            raise RecipeError(f"{where}: unknown setting {key!r}; settings: {', '.join(allowed)}")
        value = _normalise(key, value, hints[key], f"{where}.{key}")
        problem = bounds().get(key)
        problem = problem.problem(key, value) if problem else None
        if problem:
            raise RecipeError(f"{where}: {problem}")
        out[key] = value
    return out


def _normalise(key: str, value, tp, where: str):
    if key == "audio_head" and isinstance(value, dict):
        return json.dumps(value, sort_keys=True)
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    base = args[0] if args else tp
    if value is None:
        if type(None) in typing.get_args(tp):
            return None
        raise RecipeError(f"{where} cannot be null")
    if typing.get_origin(base) is list:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise RecipeError(f"{where} is a list of text, got {value!r}")
        return list(value)
    if base is bool:
        if not isinstance(value, bool):
            raise RecipeError(f"{where} is true or false, got {value!r}")
        return value
    if base is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if base is str and not isinstance(value, str):
        raise RecipeError(f"{where} is text, got {value!r}")
    return value


def _merge(parent: dict, child: dict) -> dict:
    """`child` over `parent`: section by section, key by key (lists replace); a section or
    family set to null drops the parent's."""
    out = {"description": child["description"], "extends": child.get("extends")}
    out["build"] = {k: v for k, v in {**(parent.get("build") or {}),
                                      **(child.get("build") or {})}.items() if v is not None}
    for stage in STAGES:
        out[stage] = _merge_section(parent.get(stage), child, stage)
    if "families" in child or "families" in parent:
        theirs, mine = parent.get("families") or {}, child.get("families") or {}
        out["families"] = {
            fam: {s: v for s in STAGES
                  if (v := _merge_section((theirs.get(fam) or {}).get(s), mine.get(fam) or {},
                                          s)) is not None}
            for fam in dict.fromkeys([*theirs, *mine])
            if not (fam in mine and mine[fam] is None)}  # null: dropped by the child
    return out


def _merge_section(parent: dict | None, child: dict, stage: str) -> dict | None:
    if stage not in child:
        return parent
    if child[stage] is None:
        return None
    return {**(parent or {}), **child[stage]}


# ---- command line ---------------------------------------------------------------------------

def summary_lines() -> list[str]:
    """`NAME  first sentence of its description` for every shipped recipe."""
    lines = []
    for name in shipped():
        try:
            text = load(name).description
        except RecipeError as e:
            text = f"(unreadable: {e})"
        first = re.split(r"(?<=[a-z0-9)])\. (?=[A-Z])", text)[0].rstrip(".")
        lines.append(f"{name}  {first}")
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m teminal.train.recipes",
                                description="Named recipes (train/configs/recipes/).")
    sub = p.add_subparsers(dest="command")
    show = sub.add_parser("show", help="a recipe as resolved (YAML), for one family or all")
    show.add_argument("recipe")
    show.add_argument("--family", choices=FAMILIES)
    flags = sub.add_parser("build-flags", help="its `pipeline build` flags, one per line")
    flags.add_argument("recipe")
    args = p.parse_args(argv)
    try:
        if args.command is None:
            print("\n".join(summary_lines()))
        elif args.command == "build-flags":
            print("\n".join(build_flags(load(args.recipe).build)))
        else:
            recipe = load(args.recipe)
            families = [args.family] if args.family else list(recipe.families or FAMILIES)
            docs = [recipe.for_family(f).record() for f in families]
            print(yaml.safe_dump_all(docs, sort_keys=False, width=100), end="")
    except RecipeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
