"""The one place that imports msclap: Microsoft CLAP's own model modules, built offline.

The `msclap` package (1.3.4, installed with --no-deps because it pins transformers < 5) supplies
`msclap.models.clap.CLAP` (CNN14 or HTSAT + a transformers text model + projections); its
package `__init__` and `CLAPWrapper` are never imported (the wrapper downloads weights at
construction and calls `AutoTokenizer.from_pretrained` on a hub id). The text model's
architecture comes from the bundled configs below, sized from the checkpoint's own tensors,
instead of `AutoModel.from_pretrained`.

Frame-level features for the order-aware head (msclap returns pooled ones only) are read with
forward hooks on msclap's own modules (`audio_frames`), so its forward code runs unchanged.
"""
from __future__ import annotations

import contextlib
import importlib
import os

import torch.nn.functional as F
from torch import nn

from teminal.models.bare_import import register_bare_package

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

INSTALL = ("pip install --no-deps msclap==1.3.4 (its model modules only; --no-deps because it "
           "pins transformers<5; see README, 'Model families')")

# msclap's configs/config_{2022,2023}.yml, the settings CLAP() is built with
VERSIONS = {
    "2022": {"audioenc_name": "Cnn14", "out_emb": 2048, "sample_rate": 44100, "duration": 5,
             "window_size": 1024, "hop_size": 320, "mel_bins": 64, "fmin": 50, "fmax": 14000,
             "classes_num": 527, "d_proj": 1024, "text_model": "bert-base-uncased",
             "text_len": 100, "transformer_embed_dim": 768},
    "2023": {"audioenc_name": "HTSAT", "out_emb": 768, "sample_rate": 44100, "duration": 7,
             "window_size": 1024, "hop_size": 320, "mel_bins": 64, "fmin": 50, "fmax": 8000,
             "classes_num": 527, "d_proj": 1024, "text_model": "gpt2", "text_len": 77,
             "transformer_embed_dim": 768},
}
# bert-base-uncased's and gpt2's config.json; sizes are replaced by the checkpoint's own
BERT_BASE_UNCASED = {"model_type": "bert", "vocab_size": 30522, "hidden_size": 768,
                     "num_hidden_layers": 12, "num_attention_heads": 12,
                     "intermediate_size": 3072, "hidden_act": "gelu", "hidden_dropout_prob": 0.1,
                     "attention_probs_dropout_prob": 0.1, "max_position_embeddings": 512,
                     "type_vocab_size": 2, "initializer_range": 0.02, "layer_norm_eps": 1e-12,
                     "pad_token_id": 0}
GPT2 = {"model_type": "gpt2", "vocab_size": 50257, "n_positions": 1024, "n_embd": 768,
        "n_layer": 12, "n_head": 12, "n_inner": None, "activation_function": "gelu_new",
        "resid_pdrop": 0.1, "embd_pdrop": 0.1, "attn_pdrop": 0.1, "layer_norm_epsilon": 1e-5,
        "initializer_range": 0.02, "bos_token_id": 50256, "eos_token_id": 50256}


def msclap_modules():
    """`msclap.models.clap`, imported without msclap's `__init__` (which imports CLAPWrapper:
    hub downloads, global warning and logging changes)."""
    register_bare_package("msclap", INSTALL)
    return importlib.import_module("msclap.models.clap")


@contextlib.contextmanager
def text_model_from_config(text_config: dict):
    """Within the block, msclap's `AutoModel.from_pretrained(name)` builds a randomly
    initialised model from `text_config` (a transformers config dict with model_type)."""
    module = msclap_modules()
    original = module.AutoModel

    class _FromConfig:
        @staticmethod
        def from_pretrained(*_args, **_kwargs):
            from transformers import AutoConfig, AutoModel

            cfg = dict(text_config)
            return AutoModel.from_config(AutoConfig.for_model(cfg.pop("model_type"), **cfg))

    module.AutoModel = _FromConfig
    try:
        yield module
    finally:
        module.AutoModel = original


@contextlib.contextmanager
def htsat_sizes(sizes: dict | None):
    """Within the block, msclap's audio encoder lookup returns a wrapper whose Swin transformer
    (msclap's own HTSAT_Swin_Transformer) has `sizes` (embed_dim, depths, num_heads) instead of
    HTSATWrapper's fixed defaults (96, [2, 2, 6, 2], [4, 8, 16, 32]): tests use a tiny tower.
    Same parameter names, same forward. None leaves msclap's own HTSATWrapper."""
    if not sizes:
        yield
        return
    htsat = importlib.import_module("msclap.models.htsat")
    audio = importlib.import_module("msclap.models.audio")

    class SizedHTSATWrapper(nn.Module):
        def __init__(self, *_args):
            super().__init__()
            self.htsat = htsat.HTSAT_Swin_Transformer(
                config=htsat.config, embed_dim=int(sizes["embed_dim"]),
                depths=list(sizes["depths"]), num_heads=list(sizes["num_heads"]))

        forward = htsat.HTSATWrapper.forward

    original = audio.HTSATWrapper
    audio.HTSATWrapper = SizedHTSATWrapper
    try:
        yield
    finally:
        audio.HTSATWrapper = original


def build_clap(version_cfg: dict, text_config: dict, audio_sizes: dict | None = None) -> nn.Module:
    """msclap's own `CLAP` module for a version's settings and a text config (random init);
    `audio_sizes`: the HTSAT sizes of a 2023 model (see `htsat_sizes`)."""
    keys = ("audioenc_name", "sample_rate", "window_size", "hop_size", "mel_bins", "fmin",
            "fmax", "classes_num", "out_emb", "text_model", "transformer_embed_dim", "d_proj")
    cfg = dict(version_cfg)
    if audio_sizes:
        cfg["out_emb"] = int(audio_sizes["embed_dim"]) * 2 ** (len(audio_sizes["depths"]) - 1)
    with text_model_from_config(text_config) as module, htsat_sizes(audio_sizes):
        return module.CLAP(**{k: cfg[k] for k in keys})


HTSAT_DEFAULT = {"embed_dim": 96, "depths": [2, 2, 6, 2], "num_heads": [4, 8, 16, 32]}


@contextlib.contextmanager
def audio_frames(base: nn.Module, encoder: str):
    """Within the block, `box["frames"]` receives the frame-level features [B, T, C] of the
    next pass of msclap's audio tower `base` (AudioEncoder.base; `encoder` its
    VERSIONS[...]["audioenc_name"]), read by a hook:
    - CNN14: conv_block6's output averaged over frequency, through fc1 + ReLU frame by frame
      (laion's PANN `fine_grained_embedding` does the same), the frames whose max + mean over
      time make the pooled embedding;
    - HTSAT: the [B, C, freq, time] grid its token-semantic conv reads (time in order, the
      tensor `latent_output` averages), averaged over frequency.
    Width C is the pooled embedding's in both."""
    box: dict = {}
    if encoder == "HTSAT":
        def grid(_module, args):
            box["frames"] = args[0].mean(2).transpose(1, 2)

        handle = base.htsat.tscam_conv.register_forward_pre_hook(grid)
    else:
        def conv(_module, _args, out):
            box["frames"] = F.relu(base.fc1(out.mean(3).transpose(1, 2)))

        handle = base.conv_block6.register_forward_hook(conv)
    try:
        yield box
    finally:
        handle.remove()
