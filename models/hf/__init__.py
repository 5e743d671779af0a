"""Family "hf": transformers' `ClapModel` (laion/clap-htsat-unfused, larger_clap_general, ...)
behind the adapter interface.

    adapter.py   HfClapModel (towers, head tokens from the audio encoder's frames, save)
    features.py  ClapFeatureExtractor's non-fusion log-mel input, in torch
    loading.py   load / load_checkpoint: hf:DIR and project checkpoint folders
"""
from teminal.models.hf.adapter import HfClapModel
from teminal.models.hf.loading import load, load_checkpoint

__all__ = ["HfClapModel", "load", "load_checkpoint"]
