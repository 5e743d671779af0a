"""Family "msclap": Microsoft CLAP (Elizalde et al.; the TeminAL paper's base) from a local
weights file, behind the AudioTextModel interface, fully offline.

    msclap:PATH.pth?version=2022|2023[&text=DIR]
        PATH: msclap's weights file (a dict with the state dict under "model", e.g.
        CLAP_weights_2022.pth); DIR: the text tokenizer's files (2022: BERT's vocab.txt of
        bert-base-uncased; 2023: GPT-2's vocab.json + merges.txt), else a Hugging Face cache
        that holds them.

Route (see README, "Model families"): the `msclap` package (1.3.4, installed with --no-deps
because it pins transformers < 5) supplies its own model modules, `msclap.models.clap.CLAP`
(CNN14 or HTSAT + a transformers text model + projections); its package `__init__` and
`CLAPWrapper` are never imported (the wrapper downloads weights at construction and calls
`AutoTokenizer.from_pretrained` on a hub id). The text model's architecture comes from the
bundled configs below, sized from the checkpoint's own tensors, instead of
`AutoModel.from_pretrained`; weights come from the file, loaded strictly.

Inputs follow CLAPWrapper: 44.1 kHz; clips shorter than the duration (2022: 5 s, 2023: 7 s) are
repeated and cut (no zeros); longer ones are centre-cropped here (msclap: a random window).
2023's HTSAT computes its mel filters for 32 kHz (msclap/models/config.py) while the wrapper
feeds it 44.1 kHz audio; this is msclap's own behaviour and is kept. Texts: 2023 appends
" <|endoftext|>" and pads with "!" (GPT-2 id 0) to 77 tokens; 2022 pads to 100. Embeddings are
msclap's projections, L2-normalised here (msclap normalises only in compute_similarity).
"""
from __future__ import annotations

import contextlib
import copy
import importlib
import json
import logging
import os
import shutil
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from teminal.models.fft_stft import use_fft_stft
from teminal.models import trainable
from teminal.models.audio_input import Resampler, prepare_batch
from teminal.models.bare_import import register_bare_package
from teminal.models.errors import MissingFile, ModelFilesNotFound, ModelSpecError
from teminal.models.interface import weights_sha256_of
from teminal.models.registry import CONFIG_FILE, ParsedSpec

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

log = logging.getLogger(__name__)

WEIGHTS_FILE = "model.safetensors"
TOKENIZER_SUBDIR = "tokenizer"
INSTALL = ("pip install --no-deps msclap==1.3.4 (its model modules only; --no-deps because it "
           "pins transformers<5; see README, 'Model families')")
WEIGHTS_HOWTO = ("on a machine with internet: `hf download microsoft/msclap "
                 "CLAP_weights_{version}.pth --local-dir DIR` (or github.com/microsoft/CLAP), copy "
                 "it here, then pass --model msclap:DIR/CLAP_weights_{version}.pth?version={version}")
TOKENIZER_HOWTO = ("on a machine with internet: `hf download {repo} {files} --local-dir DIR`, copy "
                   "DIR here and pass msclap:PATH.pth?version={version}&text=DIR")

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
TOKENIZER_FILES = {"2022": ("vocab.txt",), "2023": ("vocab.json", "merges.txt")}
TOKENIZER_REPOS = {"2022": ("bert-base-uncased", "google-bert/bert-base-uncased"),
                   "2023": ("gpt2", "openai-community/gpt2")}
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
TEXT_PREFIX = "caption_encoder.base."
# buffers that one transformers version saves and another does not (LAION-AI/CLAP #113 kin)
NON_PERSISTENT = (".position_ids", ".token_type_ids", ".attn.bias", ".attn.masked_bias")


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


HTSAT_PREFIX = "audio_encoder.base.htsat."
HTSAT_DEFAULT = {"embed_dim": 96, "depths": [2, 2, 6, 2], "num_heads": [4, 8, 16, 32]}


def htsat_sizes_for(state: dict[str, torch.Tensor], source: str) -> dict:
    """The HTSAT sizes of a 2023 checkpoint's audio tower, read from its tensors."""
    patch = state.get(HTSAT_PREFIX + "patch_embed.proj.weight")
    if patch is None:
        raise ModelSpecError(f"{source}: no {HTSAT_PREFIX}patch_embed; is it a Microsoft CLAP "
                             "2023 checkpoint (?version=2023)?")
    blocks: dict[int, set[int]] = {}
    for k in state:
        if k.startswith(HTSAT_PREFIX + "layers.") and ".blocks." in k:
            parts = k[len(HTSAT_PREFIX):].split(".")
            blocks.setdefault(int(parts[1]), set()).add(int(parts[3]))
    stages = sorted(blocks)
    heads = [int(state[f"{HTSAT_PREFIX}layers.{i}.blocks.0.attn.relative_position_bias_table"]
                 .shape[1]) for i in stages]
    return {"embed_dim": int(patch.shape[0]), "depths": [len(blocks[i]) for i in stages],
            "num_heads": heads}


def text_config_for(state: dict[str, torch.Tensor], version: str, source: str) -> dict:
    """The bundled text config with the sizes of the checkpoint's text tower."""
    def get(name):
        t = state.get(TEXT_PREFIX + name)
        if t is None:
            raise ModelSpecError(f"{source}: no {TEXT_PREFIX + name}; is it a Microsoft CLAP "
                                 f"{version} checkpoint (?version={version})?")
        return t

    if version == "2022":
        words = get("embeddings.word_embeddings.weight")
        layers = {int(k.split(".")[4]) for k in state if k.startswith(TEXT_PREFIX + "encoder.layer.")}
        cfg = {**BERT_BASE_UNCASED, "vocab_size": int(words.shape[0]),
               "hidden_size": int(words.shape[1]),
               "num_hidden_layers": max(layers) + 1 if layers else 0,
               "max_position_embeddings": int(get("embeddings.position_embeddings.weight").shape[0]),
               "type_vocab_size": int(get("embeddings.token_type_embeddings.weight").shape[0]),
               "intermediate_size": int(get("encoder.layer.0.intermediate.dense.weight").shape[0])}
        cfg["num_attention_heads"] = max(1, cfg["hidden_size"] // 64)
        return cfg
    words = get("wte.weight")
    layers = {int(k.split(".")[3]) for k in state if k.startswith(TEXT_PREFIX + "h.")}
    cfg = {**GPT2, "vocab_size": int(words.shape[0]), "n_embd": int(words.shape[1]),
           "n_layer": max(layers) + 1 if layers else 0,
           "n_positions": int(get("wpe.weight").shape[0]),
           "n_inner": int(get("h.0.mlp.c_fc.weight").shape[1])}
    cfg["n_head"] = max(1, cfg["n_embd"] // 64)
    return cfg


def text_width(text_config: dict) -> int:
    return int(text_config.get("hidden_size") or text_config["n_embd"])


def default_trainable(version: str, text_config: dict) -> list[str]:
    """TeminAL's subset on Microsoft CLAP: the last audio block and the audio projection; the
    last text layer (GPT-2: and its final norm) and the text projection; the temperature.
    (BERT's pooler is left out: msclap reads the CLS token, the pooler gets no gradient.)"""
    if version == "2022":
        audio = ["audio_encoder.base.conv_block6.*", "audio_encoder.base.fc1.*"]
        last = text_config["num_hidden_layers"] - 1
        text = [f"caption_encoder.base.encoder.layer.{last}.*"]
    else:
        audio = [f"{HTSAT_PREFIX}layers.3.*", f"{HTSAT_PREFIX}norm.*"]
        last = text_config["n_layer"] - 1
        text = [f"caption_encoder.base.h.{last}.*", "caption_encoder.base.ln_f.*"]
    return audio + ["audio_encoder.projection.*"] + text + ["caption_encoder.projection.*",
                                                              "logit_scale"]


class MsClapTokenizer:
    """msclap's text preprocessing (CLAPWrapper.preprocess_text) on local tokenizer files."""

    def __init__(self, folder: Path, version: str):
        self.folder, self.version = Path(folder), version
        self.max_length = VERSIONS[version]["text_len"]
        if version == "2022":
            from transformers import BertTokenizer

            self._tok = BertTokenizer.from_pretrained(str(self.folder), local_files_only=True)
            self.keys = ("input_ids", "token_type_ids", "attention_mask")
        else:
            from transformers import GPT2Tokenizer

            self._tok = GPT2Tokenizer.from_pretrained(str(self.folder), local_files_only=True)
            self._tok.add_special_tokens({"pad_token": "!"})
            self.keys = ("input_ids", "attention_mask")

    def __call__(self, texts: list[str]) -> dict[str, torch.Tensor]:
        if self.version == "2023":
            texts = [t + " <|endoftext|>" for t in texts]
        enc = self._tok(list(texts), add_special_tokens=True, max_length=self.max_length,
                        padding="max_length", truncation=True, return_tensors="pt")
        return {k: enc[k] for k in self.keys}

    def files(self) -> list[Path]:
        return [self.folder / f for f in TOKENIZER_FILES[self.version]]


class MsClapModel(nn.Module):
    """msclap's CLAP module with msclap's input handling and a named trainable subset."""

    family = "msclap"

    def __init__(self, config: dict, tokenizer: MsClapTokenizer):
        super().__init__()
        self.config = copy.deepcopy(config)
        self.config["family"] = "msclap"
        version = self.config["version"]
        self.settings = VERSIONS[version]
        text_cfg = self.config["text"]["config"]
        self.config.setdefault("trainable", default_trainable(version, text_cfg))
        self.config.setdefault("audio", {}).setdefault("crop", "center")
        self.clap = build_clap({**self.settings, "transformer_embed_dim": text_width(text_cfg)},
                               text_cfg, self.config.get("audio_sizes"))
        use_fft_stft(self.clap)   # msclap's CNN14 and HTSAT use torchlibrosa's STFT too
        self.tokenizer = tokenizer
        self._resampler = Resampler(self.sample_rate)

    @property
    def weights_sha256(self) -> str:
        return weights_sha256_of(self.config.get("weights"))

    @property
    def sample_rate(self) -> int:
        return int(self.settings["sample_rate"])

    @property
    def clip_samples(self) -> int:
        return int(self.settings["duration"] * self.sample_rate)

    @property
    def embed_dim(self) -> int:
        return int(self.settings["d_proj"])

    @property
    def device(self) -> torch.device:
        return self.clap.logit_scale.device

    def tokenize(self, texts: list[str]) -> dict[str, torch.Tensor]:
        if isinstance(texts, str):
            raise TypeError("tokenize takes a list of strings, not one string")
        return self.tokenizer(list(texts))

    def prepare_audio(self, wave, sample_rate=None, lengths=None) -> torch.Tensor:
        return prepare_batch(wave, sample_rate, lengths, resampler=self._resampler,
                             clip_samples=self.clip_samples,
                             crop_where=self.config["audio"]["crop"], device=self.device,
                             pad="repeat")

    def forward(self, audio=None, text_tokens=None, sample_rate=None):
        audio_emb = None if audio is None else self._encode_audio(
            self.prepare_audio(audio, sample_rate))
        text_emb = None if text_tokens is None else self._encode_text(text_tokens)
        return audio_emb, text_emb

    def embed_audio(self, wave, sample_rate, lengths=None) -> torch.Tensor:
        return self._encode_audio(self.prepare_audio(wave, sample_rate, lengths))

    def embed_text(self, texts: list[str]) -> torch.Tensor:
        if len(texts) == 0:
            return torch.zeros(0, self.embed_dim, device=self.device)
        return self._encode_text(self.tokenize(texts))

    def logit_scale(self) -> torch.Tensor:
        return self.clap.logit_scale.exp().clamp(max=100.0)

    def _encode_audio(self, wave: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.clap.audio_encoder(wave)[0], dim=-1)

    def _encode_text(self, tokens: dict) -> torch.Tensor:
        tokens = {k: v.to(self.device) for k, v in tokens.items()}
        return F.normalize(self.clap.caption_encoder(tokens), dim=-1)

    def set_trainable(self, patterns=None) -> tuple[int, int]:
        patterns = trainable.resolve(patterns, self.config["trainable"])
        return trainable.apply(self.clap, patterns, f"msclap {self.config['version']}")

    def named_weights(self) -> dict[str, torch.nn.Parameter]:
        """Every parameter under msclap's own names (those --trainable patterns match)."""
        return dict(self.clap.named_parameters())

    def trainable_names(self) -> list[str]:
        return [n for n, p in self.named_weights().items() if p.requires_grad]

    def train(self, mode: bool = True):
        super().train(mode)
        trainable.freeze_frozen_norms(self.clap)
        return self

    def save(self, directory, extra: dict | None = None) -> Path:
        """DIR/model.safetensors (msclap's parameter names: `{"model": load_file(...)}` is an
        msclap weights file again), DIR/config.json (family, version, text config, extra) and
        the tokenizer files in DIR/tokenizer/."""
        from safetensors.torch import save_file

        directory = Path(directory)
        tok_dir = directory / TOKENIZER_SUBDIR
        tok_dir.mkdir(parents=True, exist_ok=True)
        for f in self.tokenizer.files():
            if f.resolve() != (tok_dir / f.name).resolve():
                shutil.copyfile(f, tok_dir / f.name)
        config = copy.deepcopy(self.config)
        config.update(extra=dict(extra or {}))
        config["text"]["dir"] = TOKENIZER_SUBDIR
        config.pop("weights", None)
        state = {k: v.detach().contiguous().cpu() for k, v in self.clap.state_dict().items()}
        tmp = directory / (WEIGHTS_FILE + ".tmp")
        save_file(state, str(tmp), metadata={"format": "pt", "producer": "teminal.models"})
        tmp.replace(directory / WEIGHTS_FILE)
        tmp = directory / (CONFIG_FILE + ".tmp")
        tmp.write_text(json.dumps(config, indent=2, default=str) + "\n")
        tmp.replace(directory / CONFIG_FILE)
        return directory

    def load_weights(self, state: dict[str, torch.Tensor], source: str) -> None:
        own = self.clap.state_dict()
        state = {k[len("module."):] if k.startswith("module.") else k: v for k, v in state.items()}
        state = {k: v for k, v in state.items() if k in own or not k.endswith(NON_PERSISTENT)}
        for k in own:
            if k not in state and k.endswith(NON_PERSISTENT):
                state[k] = own[k]
        try:
            result = self.clap.load_state_dict(state, strict=False)
        except RuntimeError as e:
            raise ModelSpecError(f"the weights in {source} do not fit Microsoft CLAP "
                                 f"{self.config['version']}: {str(e)[:400]}") from None
        if result.missing_keys or result.unexpected_keys:
            raise ModelSpecError(
                f"the weights in {source} do not fit Microsoft CLAP {self.config['version']}: "
                f"{len(result.missing_keys)} missing (e.g. {result.missing_keys[:4]}), "
                f"{len(result.unexpected_keys)} unexpected (e.g. {result.unexpected_keys[:4]}). "
                "Is ?version= right (2022: CNN14 + BERT, 2023: HTSAT + GPT-2)?")


# ---- loading -------------------------------------------------------------------------------

def _cached_tokenizer_dir(version: str) -> Path | None:
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    for repo in TOKENIZER_REPOS[version]:
        paths = [try_to_load_from_cache(repo, f) for f in TOKENIZER_FILES[version]]
        if all(isinstance(p, str) for p in paths) and len({Path(p).parent for p in paths}) == 1:
            return Path(paths[0]).parent
    return None


def _tokenizer_dir(text: str | None, version: str) -> tuple[Path | None, list[MissingFile]]:
    files = TOKENIZER_FILES[version]
    how = TOKENIZER_HOWTO.format(repo=TOKENIZER_REPOS[version][0], files=" ".join(files),
                                 version=version)
    if text:
        folder = Path(text).expanduser()
        missing = [MissingFile(f"msclap {version} tokenizer file", str(folder / f), how)
                   for f in files if not (folder / f).is_file()]
        return (None if missing else folder), missing
    cached = _cached_tokenizer_dir(version)
    if cached is not None:
        return cached, []
    return None, [MissingFile(f"msclap {version} tokenizer {f}",
                              "not found (no ?text=DIR given, not in the Hugging Face cache)", how)
                  for f in files]


def _read_state(path: Path) -> dict[str, torch.Tensor]:
    from teminal.models.tensor_files import PickledObjects, load_tensors

    try:
        ckpt = load_tensors(path)
    except PickledObjects:
        raise
    except Exception as e:  # truncated download, not a torch file, ...
        raise ModelSpecError(f"cannot read {path}: {str(e)[:300]}. Is the download complete?"
                             ) from None
    state = ckpt.get("model") if isinstance(ckpt, dict) else None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelSpecError(f"{path} is not an msclap weights file (a dict with the state dict "
                             "under 'model')")
    return state


def load(parsed: ParsedSpec) -> MsClapModel:
    spec, path = parsed.spec, parsed.path
    version = parsed.options.get("version")
    if version not in VERSIONS:
        raise ModelSpecError(f"{spec!r}: say which Microsoft CLAP it is with ?version=2022 "
                             f"(CNN14 + BERT) or ?version=2023 (HTSAT + GPT-2), got {version!r}")
    missing = [] if path.is_file() else [MissingFile(
        f"Microsoft CLAP {version} weights", str(path), WEIGHTS_HOWTO.format(version=version))]
    tok_dir, tok_missing = _tokenizer_dir(parsed.options.get("text"), version)
    if missing or tok_missing:  # every missing file at once
        raise ModelFilesNotFound(spec, missing + tok_missing)
    state = _read_state(path)
    config = {"name": f"msclap-{version}", "version": version, "source": spec,
              "weights": str(path.resolve()), "extra": {},
              "text": {"config": text_config_for(state, version, str(path))}}
    if version == "2023":
        sizes = htsat_sizes_for(state, str(path))
        if sizes != HTSAT_DEFAULT:
            config["audio_sizes"] = sizes
            log.warning("%s: HTSAT sizes %s differ from msclap's released model %s", path,
                        sizes, HTSAT_DEFAULT)
    model = MsClapModel(config, MsClapTokenizer(tok_dir, version))
    model.load_weights(state, str(path))
    model.config["text"]["dir"] = str(tok_dir.resolve())
    log.info("loaded Microsoft CLAP %s (%.1f M parameters) from %s", version,
             sum(p.numel() for p in model.parameters()) / 1e6, path)
    return model


def load_checkpoint(parsed: ParsedSpec) -> MsClapModel:
    """A project checkpoint folder of family msclap (written by MsClapModel.save)."""
    from safetensors.torch import load_file

    folder, config = parsed.path, dict(parsed.checkpoint)
    version = config.get("version")
    if version not in VERSIONS:
        raise ModelSpecError(f"{folder}/config.json: family msclap without a known version")
    text_dir = folder / config.get("text", {}).get("dir", TOKENIZER_SUBDIR)
    missing = [MissingFile("msclap checkpoint file", str(folder / f),
                           "written by MsClapModel.save / the trainer's final/ export")
               for f in (WEIGHTS_FILE,) if not (folder / f).is_file()]
    missing += [MissingFile(f"msclap {version} tokenizer file", str(text_dir / f),
                            "saved with the checkpoint; copy the whole folder")
                for f in TOKENIZER_FILES[version] if not (text_dir / f).is_file()]
    if missing:
        raise ModelFilesNotFound(str(folder), missing)
    config.update(source=str(folder), weights=str((folder / WEIGHTS_FILE).resolve()))
    model = MsClapModel(config, MsClapTokenizer(text_dir, version))
    model.load_weights(load_file(str(folder / WEIGHTS_FILE)), str(folder / WEIGHTS_FILE))
    model.config["text"]["dir"] = str(text_dir.resolve())
    return model
