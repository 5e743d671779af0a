"""TeminAL stage B: time order, with the TNCE loss over [forward; reversed; overlay] blocks.

The same pair in the other order and overlaid are the hard negatives; `--alpha-same-time`,
`--alpha-cross-time`, `--alpha-same-overlap`, `--alpha-cross-overlap` weigh them and `--beta`
the reversed and overlay rows against the forward ones (all 1: InfoNCE over 3N). Start from a
stage-A checkpoint: stage B alone was reported ineffective.

Beyond the paper: `--audio-head additive_contrast` (or `additive`, `temporal`) adds an
order-aware audio head (models/heads.py; zero-initialised, so training starts from the base),
and `--retain-singles W` replays the first sound of every forward member as a single clip with
its class prompt ("This is a sound of {label}.") and adds W x InfoNCE over those rows, so the
single-sound skill is kept.

    accelerate launch train/stage_b.py --model small --init runs/a --data OUT --out runs/b
    accelerate launch train/stage_b.py --recipe moment_timing \
        --model runs/a --data OUT --out runs/b             # the demo's recipe

A named recipe (--recipe, train/configs/recipes/) sets all of these for every family at once.
"""
from __future__ import annotations

import sys

from teminal.train.losses import info_nce, tnce
from teminal.train.trainer import Stage, main_for


def stage_b_loss(audio, text, logit_scale, n_groups, cfg, positives=None):
    """TNCE over the 3N composed rows; + retain_singles x InfoNCE over the N replayed singles
    (the extra block at the end, present when --retain-singles > 0)."""
    m = 3 * n_groups
    pos = None if positives is None else positives[:m, :m]
    loss = tnce(audio[:m], text[:m], logit_scale, n_groups,
                alpha_same_time=cfg.alpha_same_time, alpha_cross_time=cfg.alpha_cross_time,
                alpha_same_overlap=cfg.alpha_same_overlap,
                alpha_cross_overlap=cfg.alpha_cross_overlap, beta=cfg.beta, positives=pos)
    if audio.shape[0] > m:
        pos = None if positives is None else positives[m:, m:]
        loss = loss + cfg.retain_singles * info_nce(audio[m:], text[m:], logit_scale, pos)
    return loss


STAGE = Stage(name="stage_b", data_stage="b", relations=("forward", "reversed", "overlay"),
              loss=stage_b_loss, replay="forward",
              wants_init="stage B starts from the base model: no --init given. The method is A "
                         "then B; pass --init RUN_A (a stage-A run dir or its final/)")


def main(argv: list[str] | None = None) -> int:
    return main_for(STAGE, argv, __doc__)


if __name__ == "__main__":
    sys.exit(main())
