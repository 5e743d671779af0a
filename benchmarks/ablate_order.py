"""Ablation of order learning on the synthetic default, over seeds: does order generalise to
class pairs never seen in post-training, and what does it cost the single-sound skill?

    python benchmarks/ablate_order.py --seeds 0 1 2            # the table in BENCHMARKS.md
    python benchmarks/ablate_order.py --seeds 0 --quick        # seconds: the suite's smoke run

Per seed: one small CLAP pretrained from random init (model seed = data-order seed = the seed),
shared by every row; stage A once per audio head; then stage B per row. The class pairs of
`teminal.evaluate.holdout.synthetic_holdout()` (a ring: 12 of 66 pairs) are removed from stages
A and B with `--where`. Rows:

    paper            pooled head, the paper's trainable subset, A then B
    paper_alpha0     the same with --alpha-same-time 0 (no same-pair reversed negative)
    b_only           stage B straight from the base (no stage A)
    temporal         order-aware audio head (--audio-head temporal) in A and B
    temporal_retain  temporal + --retain-singles 1 (single clips replayed in stage B)
    temporal_retain_q  the same replay at a quarter of the weight (--retain-singles 0.25)
    additive_retain  temporal_retain with a head without a mixer (--audio-head additive): each
                     time token projected on its own, so the head's residual is a sum over
                     positions
    additive_retain_ov2  the same with --alpha-same-overlap 2 (the same pair overlaid weighs
                     twice as a negative: the held-out errors were "before" read as "while");
                     the demo's recipe until 2026-12-06
    additive_retain_ov4  the same with --alpha-same-overlap 4
    contrast_retain  additive_retain with the head's contrast term (--audio-head
                     additive_contrast: how much the two halves differ, the same direction for
                     every pair; an overlay's halves do not differ, a concatenation's do)
    contrast_retain_ov2  the same with --alpha-same-overlap 2
    additive_frozen_ov2, contrast_frozen_ov2  those rows with the audio branch frozen in stage B
                     (only the head, the audio projection and the default text subset train)
    contrast_frozen_ov2_r2  contrast_frozen_ov2 with the replay weighing 2 (--retain-singles 2);
                     the demo's recipe until the third session of 2026-12-06
    contrast_frozen_text_r2  contrast_frozen_ov2_r2 with the text tower's first block trained too
    contrast_frozen_text_pos_r2  the same + the text's position embeddings
    contrast_frozen_text_t2  contrast_frozen_text_r2 with --alpha-same-time 2
    contrast_frozen_text_lr03  contrast_frozen_text_r2 with the text transformer at 0.3 x the
                     lr (`--lr-mult 'text_branch.*=0.3'`): it learns less per class pair
    contrast_frozen_text_lr03_avg  the same, exporting the mean of the weights at steps 300,
                     350, .., 500 (`--average-from 300`, train/averaging.py): one run's
                     held-out order moves by 0.05-0.10 between checkpoints 50 steps apart;
                     the demo's recipe (scripts/demo.sh spells out the same flags)
    contrast_frozen_avg  contrast_frozen_ov2_r2 with the same averaging
    contrast_frozen_tok_r2  contrast_frozen_ov2_r2 with the text transformer frozen and the token
                     embeddings trained: what the text side learns ("while", the class words)
                     is the same for every pair by construction
    contrast_frozen_textproj_r2  contrast_frozen_ov2_r2 with the text transformer frozen (only
                     ln_final and the projections train): text order cannot be learned per pair
    contrast_frozen_r2_templates  contrast_frozen_ov2_r2 with stage-B captions drawn from several
                     wordings per relation (TRAIN_TEMPLATES; "then", "first .., then" and "at the
                     same time as" stay held out)
    antisym          the head made antisymmetric in time (models/heads.py): singles and overlays
                     keep their pooled embedding exactly, order is all the head adds
    antisym_retain   antisym + --retain-singles 1 (a replay that cannot pass through the head)
    temporal_text    temporal, with the whole text transformer trained in stage B (the default
                     subset trains only its last block: the error analysis in BENCHMARKS.md)
    temporal_retain_text  temporal_text + --retain-singles 1
    temporal_retain_text_a  the same with the whole text tower trained in stage A too

Every model is scored with ZSTE on the build's test split (fold 5 clips, never trained on).
Columns: single-sound (task 1), order on seen and held-out pairs (task 3), order under held-out
wordings, CompA-order group: mean +- sd over seeds, and the Wilson 95% interval of the counts
pooled over seeds. Finished steps are kept (rerun the same command to continue); the table goes
to OUT/ablation.md, everything to OUT/ablation.json, whose content is also the last line printed.
"""
from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# The model's default subset (+ the head), widened to the text tower's first block: with the
# default, only the last of the small model's two text blocks trains.
WHOLE_TEXT = ["default", "text_branch.resblocks.0.*"]
# The small model's default subset less the audio branch: in stage B only the head, the
# audio projection and the text side train, so the conv stack cannot learn pair-specific
# junction features and order has to go through the head's per-position terms.
FROZEN_AUDIO = ["--trainable", "audio_head.*", "audio_projection.*", "text_branch.resblocks.1.*",
                "ln_final.*", "text_projection.*", "logit_scale_a"]
# The demo's stage-B flags besides the trainable subset: single clips replayed at weight 2, the
# same pair overlaid weighing twice as a negative.
DEMO_B = ["--retain-singles", "2", "--alpha-same-overlap", "2"]
# FROZEN_AUDIO with the text transformer frozen too: only the projections, ln_final and the
# temperature train, so the text side cannot learn order per class pair.
TEXT_PROJECTION_ONLY = ["audio_head.*", "audio_projection.*", "ln_final.*", "text_projection.*",
                        "logit_scale_a"]
# Export the mean of the weights at steps 300, 350, .., 500 of stage B (train/averaging.py).
AVERAGE = ["--average-from", "300", "--average-every", "50"]
# --quick's values for flags whose value only makes sense in a full run (keyed by the flag).
QUICK = {"--average-from": "1", "--average-every": "1"}
# TEXT_PROJECTION_ONLY + the token embeddings: the words can move, the blocks that combine
# them cannot.
TOKENS_ONLY = [*TEXT_PROJECTION_ONLY, "token_embedding.*"]
# Stage-B captions drawn from several wordings per relation (needs a build with
# --template-set extended); "then", "first .., then" and "at the same time as" stay held out.
TRAIN_TEMPLATES = ["paper.", "ext.after", "ext.followed_by", "ext.together", "ext.while_swapped"]
STAGE_A = {"pooled": [], "temporal": ["--audio-head", "temporal"],
           "additive": ["--audio-head", "additive"],
           "contrast": ["--audio-head", "additive_contrast"],
           "antisym": ["--audio-head", '{"antisymmetric": true}'],
           "temporal_text": ["--audio-head", "temporal", "--trainable", *WHOLE_TEXT]}
ROWS = {  # name: (stage-A variant or None for B from the base, extra stage-B flags)
    "paper": ("pooled", []),
    "paper_alpha0": ("pooled", ["--alpha-same-time", "0"]),
    "b_only": (None, []),
    "temporal": ("temporal", []),
    "temporal_retain": ("temporal", ["--retain-singles", "1"]),
    "temporal_retain_q": ("temporal", ["--retain-singles", "0.25"]),
    "additive_retain": ("additive", ["--retain-singles", "1"]),
    "additive_retain_ov2": ("additive", ["--retain-singles", "1", "--alpha-same-overlap", "2"]),
    "additive_retain_ov4": ("additive", ["--retain-singles", "1", "--alpha-same-overlap", "4"]),
    "contrast_retain": ("contrast", ["--retain-singles", "1"]),
    "contrast_retain_ov2": ("contrast", ["--retain-singles", "1", "--alpha-same-overlap", "2"]),
    "additive_frozen_ov2": ("additive", ["--retain-singles", "1", "--alpha-same-overlap", "2",
                                         *FROZEN_AUDIO]),
    "contrast_frozen_ov2": ("contrast", ["--retain-singles", "1", "--alpha-same-overlap", "2",
                                         *FROZEN_AUDIO]),
    "contrast_frozen_ov2_r2": ("contrast", [*DEMO_B, *FROZEN_AUDIO]),
    "contrast_frozen_text_r2": ("contrast", [*DEMO_B, *FROZEN_AUDIO, "text_branch.resblocks.0.*"]),
    "contrast_frozen_text_pos_r2": ("contrast", [*DEMO_B, *FROZEN_AUDIO,
                                                 "text_branch.resblocks.0.*",
                                                 "positional_embedding"]),
    "contrast_frozen_text_t2": ("contrast", [*DEMO_B, "--alpha-same-time", "2", *FROZEN_AUDIO,
                                             "text_branch.resblocks.0.*"]),
    "contrast_frozen_text_lr03": ("contrast", [*DEMO_B, *FROZEN_AUDIO, "text_branch.resblocks.0.*",
                                               "--lr-mult", "text_branch.*=0.3"]),
    "contrast_frozen_text_lr03_avg": ("contrast", [*DEMO_B, *FROZEN_AUDIO, "text_branch.resblocks.0.*",
                                                   "--lr-mult", "text_branch.*=0.3", *AVERAGE]),
    "contrast_frozen_avg": ("contrast", [*DEMO_B, *AVERAGE, *FROZEN_AUDIO]),
    "contrast_frozen_tok_r2": ("contrast", [*DEMO_B, "--trainable", *TOKENS_ONLY]),
    "contrast_frozen_textproj_r2": ("contrast", [*DEMO_B, "--trainable",
                                                 *TEXT_PROJECTION_ONLY]),
    "contrast_frozen_r2_templates": ("contrast", [*DEMO_B, *FROZEN_AUDIO, "--templates",
                                                  *TRAIN_TEMPLATES]),
    "antisym": ("antisym", []),
    "antisym_retain": ("antisym", ["--retain-singles", "1"]),
    "temporal_text": ("temporal", ["--trainable", *WHOLE_TEXT]),
    "temporal_retain_text": ("temporal", ["--retain-singles", "1", "--trainable", *WHOLE_TEXT]),
    "temporal_retain_text_a": ("temporal_text", ["--retain-singles", "1",
                                                 "--trainable", *WHOLE_TEXT]),
}
COLUMNS = {  # name: path into a ZSTE result's metrics
    "single": ("task1_single",),
    "order_seen": ("task3_order", "seen"),
    "order_heldout": ("task3_order", "unseen"),
    "wordings": ("template_generalisation", "heldout"),
    "compa_group": ("compa_order", "group"),
}


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--out", type=Path, default=REPO / "runs" / "ablation")
    p.add_argument("--data", type=Path, help="an existing synthetic build (default: build one "
                                             "into OUT/data, as the demo does)")
    p.add_argument("--rows", nargs="+", default=list(ROWS), choices=list(ROWS))
    p.add_argument("--clips-per-class-per-fold", type=int, default=8)
    p.add_argument("--pretrain-steps", type=int, help="default: the config's")
    p.add_argument("--stage-a-steps", type=int, help="default: the config's")
    p.add_argument("--stage-b-steps", type=int, help="default: the config's")
    p.add_argument("--max-items", type=int, help="ZSTE on at most N clips / groups")
    p.add_argument("--quick", action="store_true",
                   help="smoke run: tiny data, 2 steps per stage, 8 ZSTE items")
    args = p.parse_args(argv)
    if args.quick:
        args.clips_per_class_per_fold = 1
        args.pretrain_steps = args.stage_a_steps = args.stage_b_steps = 2
        args.max_items = args.max_items or 8
    return args


def build_data(args) -> Path:
    """The demo's synthetic build (16 kHz, int16 PCM members, stages A and B), its members also
    captioned with the extended wordings: the same audio and canonical captions as the demo's
    build (the rows train on the canonical caption), and the wordings for
    contrast_frozen_r2_templates."""
    from teminal.manifests.vocabulary import catalog_path
    from teminal.pipeline.cli import main as pipeline

    data = args.out / "data"
    if catalog_path(data).exists():
        return data
    src = args.out / "synthetic-esc50"
    if not (src / "meta" / "esc50.csv").exists():
        _cli(pipeline, ["synth", "esc50", str(src), "--seed", "0", "--clips-per-class-per-fold",
                        str(args.clips_per_class_per_fold)])
    groups = ["--groups-per-clip", "1"] if args.quick else DEMO_GROUPS
    _cli(pipeline, ["build", "--dataset", "esc50", "--root", str(src), "--out", str(data),
                    "--stages", "a,b", "--sample-rate", "16000", "--codec", "pcm", "--seed", "0",
                    "--workers", "2", "--no-progress", "--template-set", "extended", *groups])
    return data


# The demo's group counts (scripts/demo.sh): 4 groups per clip in training, 6 in the test split
# so that the held-out pairs get >= 150 order items.
DEMO_GROUPS = ["--groups", "train=1152,val=96,test=576"]


def _cli(command, argv) -> None:
    try:
        command(argv, standalone_mode=False)
    except SystemExit as e:
        if e.code:
            raise


def train(script: str, argv: list[str], out: Path) -> float:
    """Run a training stage in this process unless OUT/final exists; seconds spent."""
    if (out / "final" / "config.json").exists():
        return 0.0
    import importlib

    module = importlib.import_module(f"teminal.train.{script}")
    t0 = time.perf_counter()
    resume = ["--resume"] if (out / "checkpoints").exists() else []
    code = module.main([*argv, "--out", str(out), "--no-progress", "--no-tensorboard", *resume])
    if code:
        raise SystemExit(f"{script} failed with exit code {code} ({out})")
    return time.perf_counter() - t0


def evaluate(model_dir: Path, data: Path, out: Path, max_items) -> dict:
    if out.exists():
        return json.loads(out.read_text())
    import torch

    from teminal.evaluate import zste as Z
    from teminal.evaluate.report import write_result
    from teminal.models import load_model

    model = load_model(str(model_dir))
    with torch.no_grad():
        result = Z.run(model, str(model_dir), data, max_items=max_items, progress=False,
                       label=out.stem)
    write_result(result, out)
    return result


def seed_model_config(seed: int, folder: Path) -> Path:
    """The bundled small model with its init seed set to `seed`."""
    from teminal.models.specs import CONFIG_DIR

    cfg = json.loads((CONFIG_DIR / "small-cnn6.json").read_text())
    cfg["seed"] = seed
    cfg["name"] = f"small-cnn6-seed{seed}"
    path = folder / f"small-seed{seed}.json"
    folder.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(cfg, indent=1))
    return path


def run_seed(seed: int, args, data: Path, where: str, times: dict) -> dict[str, dict]:
    folder = args.out / f"seed{seed}"
    common = ["--data", str(data), "--seed", str(seed)]
    steps = lambda n: ["--max-steps", str(n)] if n is not None else []  # noqa: E731
    cfg = lambda name: ["--config", str(REPO / "train" / "configs" / f"small_{name}.yaml")]  # noqa: E731
    model_cfg = seed_model_config(seed, folder)
    times["pretrain"] = times.get("pretrain", 0) + train(
        "pretrain", [*cfg("pretrain"), "--model", str(model_cfg), *common,
                     *steps(args.pretrain_steps)], folder / "base")
    results = {"base": evaluate(folder / "base", data, folder / "zste_base.json", args.max_items)}
    for variant in sorted({ROWS[r][0] for r in args.rows} - {None}):
        times["stage_a"] = times.get("stage_a", 0) + train(
            "stage_a", [*cfg("stage_a"), "--model", str(folder / "base"), *common,
                        "--where", where, *STAGE_A[variant], *steps(args.stage_a_steps)],
            folder / f"a_{variant}")
    for row in args.rows:
        variant, extra = ROWS[row]
        if args.quick:  # 2 steps: average them, so the smoke run takes the averaging path
            extra = [QUICK.get(prev, x) for prev, x in zip(["", *extra], extra)]
        init = folder / (f"a_{variant}" if variant else "base")
        times["stage_b"] = times.get("stage_b", 0) + train(
            "stage_b", [*cfg("stage_b"), "--model", str(init), *common, "--where", where,
                        *extra, *steps(args.stage_b_steps)], folder / f"b_{row}")
        results[row] = evaluate(folder / f"b_{row}", data, folder / f"zste_{row}.json",
                                args.max_items)
    return results


def _at(metrics: dict, path) -> dict | None:
    for key in path:
        metrics = (metrics or {}).get(key)
    return metrics


def summarise(per_seed: dict[int, dict[str, dict]], rows: list[str]) -> dict:
    """{row: {column: {mean, sd, per_seed, correct, n, ci95}}} over the seeds."""
    from teminal.evaluate.metrics import wilson_interval

    table = {}
    for row in ["base", *rows]:
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

    t0 = time.perf_counter()
    args.out.mkdir(parents=True, exist_ok=True)
    data = args.data or build_data(args)
    where = where_excluding(synthetic_holdout())
    times: dict[str, float] = {}
    per_seed = {}
    for seed in args.seeds:
        per_seed[seed] = run_seed(seed, args, data, where, times)
        print(f"seed {seed} done ({time.perf_counter() - t0:.0f} s)", flush=True)
    table = summarise(per_seed, args.rows)
    text = markdown(table, args.seeds)
    (args.out / "ablation.md").write_text(text)
    summary = {"benchmark": "ablate_order", "seeds": args.seeds, "rows": args.rows,
               "data": str(data), "quick": args.quick, "table": table,
               "train_seconds": {k: round(v, 1) for k, v in times.items()},
               "wall_seconds": round(time.perf_counter() - t0, 1)}
    (args.out / "ablation.json").write_text(json.dumps(summary, indent=1) + "\n")
    print(text)
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
