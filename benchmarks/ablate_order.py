"""Ablation of order learning on the synthetic default, over seeds: does order generalise to
class pairs never seen in post-training, and what does it cost the single-sound skill?

    python benchmarks/ablate_order.py --seeds 0 1 2 --rows paper contrast_frozen_text_lr03_avg
    python benchmarks/ablate_order.py --seeds 0 --quick --rows paper   # seconds: the smoke run

Rows are named recipes (train/configs/recipes/; `python -m teminal.train.recipes` lists them
with what each is, and BENCHMARKS.md cites them by name) or recipe files, run on the small
family: per seed the small CLAP (model seed = data-order seed = the seed) goes through the
recipe's stages, pretraining from random init, stage A when the recipe has one, stage B, each
started with `--recipe ROW` as the demo starts them. The class pairs of
`teminal.evaluate.holdout.synthetic_holdout()` (a ring: 12 of 66 pairs) are removed from stages
A and B with `--where`.

Steps are shared where their inputs are: one pretraining per (pretrain section, seed), on the
default build (the base stands for a released checkpoint, which no recipe's data shapes), one
stage A per (its base, stage_a section, data), a stage B per row. Each step's folder is named by
a key, the hash of everything that decides its result: the recipe's section for that stage, the
key of the step it starts from, the seed, the build id of its data, the hold-out predicate and
the settings this script overrides (step counts, --quick). A changed recipe therefore trains
anew, an unchanged one (renamed or re-described too) is reused, and an interrupted step resumes
when the same command runs again. `--quick` and the step-count options are overrides applied
over the resolved recipe, passed to the stage as flags.

Data: the demo's synthetic build (16 kHz, int16 PCM members, stages A and B; the same
`pipeline build` flags as scripts/demo.sh); a recipe with a `build:` section (for example
extended wordings) trains stages A and B on its own build of the same sources. Every model is scored with ZSTE
on the test split of the default build (fold 5 clips, never trained on), so the columns
compare whatever data a row trained on.

ZSTE runs with every wording (`--templates all`) and the timing sweep (`--junctions`, default
0.2,0.35,0.5,0.65,0.8: order and CompA-order with the second event at each of those fractions of
the clip; --quick sweeps 0.2,0.8 unless --junctions is given). Columns (COLUMNS: a path into a
ZSTE result's metrics each): single-sound (task 1), order on seen and held-out pairs (task 3),
held-out order at the worst junction of the sweep (the timing-robust order), order under
held-out wordings, CompA-order group, CompA group at that worst junction, both events of a
mixture (task 2) and the position of each event (task 5): mean +- sd over seeds and the Wilson
95% interval of the counts pooled over seeds (a worst-junction column pools each seed's own
worst junction). The table goes to OUT/ablation.md, everything to OUT/ablation.json, whose
content is also the last line printed.

Rows of the ablation before recipes that are not recipes: `contrast_retain` (additive_retain
with the contrast head, superseded by contrast_retain_ov2) and `antisym_retain` (antisym with
replay); BENCHMARKS.md cites no figure of either.
"""
from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FAMILY = "small"
# Bump when something outside a key's inputs changes what a step computes (how this script
# runs a stage), so that no folder of the old way is served for the new one.
KEY_VERSION = 1
# The demo's `pipeline build` settings (scripts/demo.sh; tests/train/test_recipes.py compares
# them): 4 groups per clip in training, 6 in the test split so that the held-out pairs get
# >= 150 order items. --quick: one group per clip instead.
DEMO_BUILD = {"stages": "a,b", "sample_rate": 16000, "groups": "train=1152,val=96,test=576",
              "codec": "pcm", "workers": 2, "seed": 0}
QUICK_BUILD = {**{k: v for k, v in DEMO_BUILD.items() if k != "groups"}, "groups_per_clip": 1}
COLUMNS = {  # name: path into a ZSTE result's metrics; a new column is one more line here
    "single": ("task1_single",),
    "order_seen": ("task3_order", "seen"),
    "order_heldout": ("task3_order", "unseen"),
    "order_heldout_worst": ("timing_sweep", "timing_robust", "order"),
    "wordings": ("template_generalisation", "heldout"),
    "compa_group": ("compa_order", "group"),
    "compa_group_worst": ("timing_sweep", "timing_robust", "compa_group"),
    "task2_mixture": ("task2_mixture",),
    "task5_position": ("task5_position",),
}
# --quick's timing sweep (an override like its step counts): the two ends of the default's
QUICK_JUNCTIONS = "0.2,0.8"


def parse_args(argv):
    from teminal.evaluate.options import SWEEP_JUNCTIONS, parse_junctions
    from teminal.train.recipes import shipped

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--out", type=Path, default=REPO / "runs" / "ablation")
    p.add_argument("--data", type=Path, help="an existing default build of the synthetic set "
                                             "(default: build one into OUT/data, as the demo "
                                             "does); rows with a build section build their own")
    p.add_argument("--rows", nargs="+", default=shipped(), metavar="RECIPE",
                   help="recipe names (train/configs/recipes/) or recipe files")
    p.add_argument("--model", default="small", choices=small_models(),
                   help="the bundled small-family model every row starts from (random init "
                        "but for a pretrained text tower; one model per table: run the "
                        "script once per model, each with its own --out)")
    p.add_argument("--clips-per-class-per-fold", type=int, default=8)
    p.add_argument("--pretrain-steps", type=int, help="default: the recipe's")
    p.add_argument("--stage-a-steps", type=int, help="default: the recipe's")
    p.add_argument("--stage-b-steps", type=int, help="default: the recipe's")
    p.add_argument("--max-items", type=int, help="ZSTE on at most N clips / groups")
    p.add_argument("--junctions", help="ZSTE's timing sweep: where the second event starts, "
                                       "fractions of the clip (default: "
                                       f"{','.join(f'{j:g}' for j in SWEEP_JUNCTIONS)}; --quick: "
                                       f"{QUICK_JUNCTIONS})")
    p.add_argument("--quick", action="store_true",
                   help="smoke run: tiny data, 2 steps per stage, 8 ZSTE items, a sweep of "
                        f"{QUICK_JUNCTIONS}")
    args = p.parse_args(argv)
    if args.quick:
        args.clips_per_class_per_fold = 1
        args.pretrain_steps = args.stage_a_steps = args.stage_b_steps = 2
        args.max_items = args.max_items or 8
        args.junctions = args.junctions or QUICK_JUNCTIONS
    try:
        args.junctions = parse_junctions(args.junctions or SWEEP_JUNCTIONS)
    except ValueError as e:
        p.error(str(e))
    return args


def small_models() -> list[str]:
    from teminal.models.laion.loading import ALIASES, bundled_configs

    return sorted(ALIASES) + [c for c in bundled_configs() if c.startswith("small-")]


def overrides(stage: str, section: dict, args) -> dict:
    """What this script sets over the recipe's section of `stage`: the step-count options, and
    under --quick an averaging window that fits its 2 steps (average both, so the smoke run
    takes the averaging path)."""
    out = {}
    steps = {"pretrain": args.pretrain_steps, "stage_a": args.stage_a_steps,
             "stage_b": args.stage_b_steps}[stage]
    if steps is not None:
        out["max_steps"] = steps
    if args.quick and section.get("average_from") is not None:
        out.update(average_from=1, average_every=1)
    return out


def stage_argv(stage: str, recipe: str, model: Path | str, data: Path | str, seed: int,
               where: str, settings: dict) -> list[str]:
    """The stage script's arguments for one step of a row (the demo's command plus the seed and
    this script's overrides as flags)."""
    from teminal.train.run_config import to_flags

    argv = ["--recipe", str(recipe), "--model", str(model), "--data", str(data),
            "--seed", str(seed)]
    if stage != "pretrain":
        argv += ["--where", where]
    return argv + to_flags(settings)


@dataclass
class Step:
    stage: str
    key: str
    folder: Path
    argv: list[str]
    inputs: dict


def plan(row: str, resolved, seed: int, model: Path, data: tuple[Path, str],
         base_data: tuple[Path, str], where: str, args, folder: Path) -> list[Step]:
    """The steps of one row for one seed, in order, each in the folder its key names. `data`
    and `base_data` are (folder, build id) of the row's training data and of the default build,
    which pretraining reads: the base stands for a released checkpoint, which no recipe's data
    shapes, and every row with the same pretraining section shares it."""
    from teminal.train.recipes import settings_hash

    steps: list[Step] = []
    init, after = model, {"model": json.loads(Path(model).read_text())}
    for stage in ("pretrain", "stage_a", "stage_b"):
        if stage not in resolved.stages:
            continue
        section = resolved.section(stage)
        extra = overrides(stage, section, args)
        path, build = base_data if stage == "pretrain" else data
        inputs = {"version": KEY_VERSION, "stage": stage, "settings": section,
                  "overrides": extra, "after": after, "seed": seed, "build_id": build,
                  "where": where if stage != "pretrain" else None}
        key = settings_hash(inputs)
        out = folder / f"{stage}-{key}"
        steps.append(Step(stage, key, out, stage_argv(stage, row, init, path, seed, where, extra),
                          inputs))
        init, after = out, key
    return steps


def train(step: Step) -> float:
    """Run a step's stage in this process unless its folder holds a final model; seconds."""
    out = step.folder
    if (out / "final" / "config.json").exists():
        return 0.0
    import importlib

    # beside the run folder: what its key is the hash of
    (out.parent / f"{out.name}.json").write_text(json.dumps(step.inputs, indent=1) + "\n")
    module = importlib.import_module(f"teminal.train.{step.stage}")
    t0 = time.perf_counter()
    resume = ["--resume"] if (out / "checkpoints").exists() else []
    code = module.main([*step.argv, "--out", str(out), "--no-progress", "--no-tensorboard",
                        *resume])
    if code:
        raise SystemExit(f"{step.stage} failed with exit code {code} ({out})")
    return time.perf_counter() - t0


def evaluate(model: Path, data: Path, out: Path, max_items, junctions) -> dict:
    """`evaluate zste --templates all --junctions ...` of `model` on `data`, kept in `out`."""
    if out.exists():
        return json.loads(out.read_text())
    import torch

    from teminal.evaluate import zste as Z
    from teminal.evaluate.report import write_result
    from teminal.models import load_model

    loaded = load_model(str(model))
    with torch.no_grad():
        result = Z.run(loaded, str(model), data, max_items=max_items, progress=False,
                       label=out.stem, templates="all", junctions=junctions)
    write_result(result, out)
    return result


def build_data(args, build: dict, eval_data: Path | None = None) -> Path:
    """The demo's synthetic build with a recipe's build settings: OUT/data for the default
    build (or --data), OUT/data-<hash of the settings> for the others."""
    from teminal.manifests.vocabulary import catalog_path
    from teminal.pipeline.cli import main as pipeline
    from teminal.train.recipes import build_flags, settings_hash

    if not build and eval_data is not None:
        return eval_data
    data = args.out / ("data" if not build else f"data-{settings_hash(build)}")
    if catalog_path(data).exists():
        return data
    src = args.out / "synthetic-esc50"
    if not (src / "meta" / "esc50.csv").exists():
        _cli(pipeline, ["synth", "esc50", str(src), "--seed", "0", "--clips-per-class-per-fold",
                        str(args.clips_per_class_per_fold)])
    plumbing = build_flags(QUICK_BUILD if args.quick else DEMO_BUILD)
    _cli(pipeline, ["build", "--dataset", "esc50", "--root", str(src), "--out", str(data),
                    *plumbing, "--no-progress", *build_flags(build)])
    return data


def build_id(data: Path) -> str:
    from teminal.train.streaming import catalog_builds

    ids = [b["build_id"] for b in catalog_builds(data)]
    if not ids:
        raise SystemExit(f"{data} holds no build (no catalog): pass a `pipeline build` output "
                         f"as --data, or leave --data out")
    return ",".join(ids)


def _cli(command, argv) -> None:
    try:
        command(argv, standalone_mode=False)
    except SystemExit as e:
        if e.code:
            raise


def seed_model_config(seed: int, folder: Path, model: str = "small") -> Path:
    """The bundled small-family model `model` (small, small-minilm, small-minilm-moment or a
    config's file name) with its init seed set to `seed`; a pretrained text tower keeps its
    weights (the seed draws what is new)."""
    from teminal.models.laion import CONFIG_DIR
    from teminal.models.laion.loading import ALIASES

    name = ALIASES.get(model, model)
    cfg = json.loads((CONFIG_DIR / f"{name}.json").read_text())
    cfg["seed"] = seed
    cfg["name"] = f"{name}-seed{seed}"
    path = folder / f"{model}-seed{seed}.json"
    folder.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(cfg, indent=1))
    return path


def resolve_rows(rows: list[str]) -> dict:
    from teminal.train.recipes import RecipeError, resolve

    try:
        return {row: resolve(row, FAMILY) for row in rows}
    except RecipeError as e:
        raise SystemExit(f"error: --rows: {e}") from None


def run_seed(seed: int, args, recipes: dict, datas: dict, eval_data: Path, where: str,
             times: dict) -> tuple[dict, dict]:
    """({row or base label: ZSTE result}, {row: its steps' folders}) of one seed."""
    from teminal.train.recipes import settings_hash

    folder = args.out / f"seed{seed}"
    model = seed_model_config(seed, folder, args.model)
    default = (eval_data, build_id(eval_data))
    results, layout, bases = {}, {}, {}
    for row, resolved in recipes.items():
        data = datas[row]
        steps = plan(row, resolved, seed, model, (data, build_id(data)), default, where, args,
                     folder)
        for step in steps:
            times[step.stage] = times.get(step.stage, 0.0) + train(step)
        base = (steps[0].folder, steps[0].key) if steps[0].stage == "pretrain" else \
            (model, settings_hash(json.loads(model.read_text())))
        bases.setdefault(base, row)
        results[row] = score(steps[-1].folder, steps[-1].key, eval_data, default[1], args)
        layout[row] = {s.stage: str(s.folder.relative_to(args.out)) for s in steps}
    for (base, key), row in bases.items():
        label = "base" if len(bases) == 1 else f"base:{row}"
        results[label] = score(base, key, eval_data, default[1], args)
    return results, layout


def score(model: Path, key: str, eval_data: Path, eval_id: str, args) -> dict:
    """ZSTE of a step's model on the evaluation build, kept under a key of its inputs."""
    from teminal.train.recipes import settings_hash

    name = settings_hash({"model": key, "build_id": eval_id, "max_items": args.max_items,
                          "templates": "all", "junctions": list(args.junctions)})
    return evaluate(model, eval_data, model.parent / f"zste-{name}.json", args.max_items,
                    args.junctions)


def _at(metrics: dict, path) -> dict | None:
    for key in path:
        metrics = (metrics or {}).get(key)
    return metrics


def summarise(per_seed: dict[int, dict[str, dict]], rows: list[str]) -> dict:
    """{row: {column: {mean, sd, per_seed, correct, n, ci95}}} over the seeds (base rows
    first)."""
    from teminal.evaluate.metrics import wilson_interval

    first = next(iter(per_seed.values()))
    table = {}
    for row in [*(r for r in first if r.startswith("base")), *rows]:
        table[row] = {}
        for col, path in COLUMNS.items():
            scores = [_at(per_seed[s][row]["metrics"], path) for s in per_seed]
            scores = [x for x in scores if x and x.get("n")]
            if not scores:
                continue
            accs = [x["accuracy"] for x in scores]
            correct, n = sum(x["correct"] for x in scores), sum(x["n"] for x in scores)
            table[row][col] = {
                "mean": statistics.fmean(accs),
                "sd": statistics.stdev(accs) if len(accs) > 1 else 0.0,
                "per_seed": accs, "correct": correct, "n": n,
                "ci95": list(wilson_interval(correct, n) or ())}
    return table


def markdown(table: dict, seeds: list[int]) -> str:
    head = ["row", *COLUMNS]
    lines = [f"ZSTE on the synthetic default's test split, mean ± sd over seeds {seeds} "
             f"[Wilson 95% of the pooled counts] (n per seed)", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row, cols in table.items():
        cells = []
        for col in COLUMNS:
            c = cols.get(col)
            cells.append("–" if c is None else
                         f"{c['mean']:.3f} ± {c['sd']:.3f} [{c['ci95'][0]:.2f}, "
                         f"{c['ci95'][1]:.2f}] ({c['n'] // len(c['per_seed'])})")
        lines.append(f"| {row} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    from teminal.evaluate.holdout import synthetic_holdout, where_excluding
    from teminal.train.recipes import settings_hash

    t0 = time.perf_counter()
    recipes = resolve_rows(args.rows)
    args.out.mkdir(parents=True, exist_ok=True)
    eval_data = args.data or build_data(args, {})
    datas = {row: build_data(args, r.build, eval_data) for row, r in recipes.items()}
    where = where_excluding(synthetic_holdout())
    times: dict[str, float] = {}
    per_seed, layout = {}, {}
    for seed in args.seeds:
        per_seed[seed], layout[seed] = run_seed(seed, args, recipes, datas, eval_data, where,
                                                times)
        print(f"seed {seed} done ({time.perf_counter() - t0:.0f} s)", flush=True)
    table = summarise(per_seed, args.rows)
    text = markdown(table, args.seeds)
    (args.out / "ablation.md").write_text(text)
    summary = {"benchmark": "ablate_order", "seeds": args.seeds, "rows": args.rows,
               "data": str(eval_data), "quick": args.quick, "table": table,
               "recipes": {row: {"hash": settings_hash({k: v for k, v in r.record().items()
                                                        if k not in ("name", "description",
                                                                     "extends", "file")}),
                                 "data": str(datas[row]),
                                 "steps": {s: layout[s][row] for s in args.seeds}}
                           for row, r in recipes.items()},
               "train_seconds": {k: round(v, 1) for k, v in times.items()},
               "wall_seconds": round(time.perf_counter() - t0, 1)}
    (args.out / "ablation.json").write_text(json.dumps(summary, indent=1) + "\n")
    print(text)
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
