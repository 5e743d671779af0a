"""TeminAL stage A: tell one sound from two.

Symmetric InfoNCE over the 2N x 2N matrix of [singles; doubles] of N whole groups, times
lambda (`--lambda-a`, paper 0.8). As in the paper's code lambda only scales the loss: with Adam
it changes little besides how often the gradient clip (0.5) engages.

    accelerate launch train/stage_a.py --model small --init runs/pretrain --data OUT --out runs/a
    accelerate launch train/stage_a.py --recipe moment_timing \
        --model runs/pretrain --data OUT --out runs/a      # the demo's recipe (its head)
"""
from __future__ import annotations

import sys

from teminal.train.losses import stage_a_nce
from teminal.train.trainer import Stage, main_for


def stage_a_loss(audio, text, logit_scale, n_groups, cfg, positives=None):
    return stage_a_nce(audio, text, logit_scale, n_groups, weight=cfg.lambda_a,
                       positives=positives)


STAGE = Stage(name="stage_a", data_stage="a", relations=("single", "double"), loss=stage_a_loss)


def main(argv: list[str] | None = None) -> int:
    return main_for(STAGE, argv, __doc__)


if __name__ == "__main__":
    sys.exit(main())
