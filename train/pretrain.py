"""Plain CLAP contrastive pretraining on single clips, so a small model learns the classes.

Reads the `single` members of the stage-A shards. Each clip's text is one of
"This is a sound of {label}." (the zero-shot prompt), the bare label, or its stage-A caption
"Single sound of {label}", drawn per clip and epoch (see streaming.class_prompt_mix).
Loss: symmetric InfoNCE over the batch, with every clip of the same class a positive (a batch of
16 clips of 12 classes repeats classes; plain InfoNCE would push those copies apart).

    accelerate launch train/pretrain.py --model small --data OUT --out runs/pretrain
    accelerate launch train/pretrain.py --recipe paper --model small --data OUT --out runs/pretrain

A recipe (--recipe NAME, train/configs/recipes/) runs pretraining only on the small family: the
pretrained families start from their released weights.
"""
from __future__ import annotations

import sys

from teminal.train.losses import info_nce
from teminal.train.streaming import class_label_key, class_prompt_mix
from teminal.train.trainer import Stage, main_for


def pretrain_loss(audio, text, logit_scale, n_groups, cfg, positives=None):
    return info_nce(audio, text, logit_scale, positives)


STAGE = Stage(name="pretrain", data_stage="a", relations=("single",), loss=pretrain_loss,
              caption=class_prompt_mix, positive_key=class_label_key)


def main(argv: list[str] | None = None) -> int:
    return main_for(STAGE, argv, __doc__)


if __name__ == "__main__":
    sys.exit(main())
