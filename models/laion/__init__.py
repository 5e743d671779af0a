"""Families "small" and "laion": laion-clap's own `CLAP` behind the adapter interface.

    adapter.py      ClapModel (the adapter: towers, head tokens, save)
    loading.py      load / load_checkpoint / build: specs and checkpoint folders -> ClapModel
    checkpoint.py   released LAION-CLAP checkpoints: read, fix keys, infer the architecture
    library.py      the one place that imports laion_clap (without its hub-reaching __init__)
    tokenizers.py   the text towers' tokenizers, from local files only
    export.py       a post-trained model as the .pt laion-clap's CLAP_Module.load_ckpt reads
    configs/        the bundled model configs (small-cnn6: the small CPU model)

Importing this package imports no laion_clap code; that happens when a model is built.
"""
from teminal.models.laion.adapter import ClapModel
from teminal.models.laion.loading import (ALIASES, CONFIG_DIR, build, bundled_configs, load,
                                          load_checkpoint)

__all__ = ["ALIASES", "CONFIG_DIR", "ClapModel", "build", "bundled_configs", "load",
           "load_checkpoint"]
