"""Export a (post-trained) model in its family's own format, with a model card.

    python -m teminal.models.export MODEL --out PATH [--format laion|msclap|hf]
                                    [--zste RESULT.json] [--without-head]

MODEL is any spec `load_model` reads, usually a training run (RUN_DIR or RUN_DIR/final).

    laion   PATH.pt: {"state_dict": ...}, what laion-clap's CLAP_Module.load_ckpt reads
            (family laion: HTSAT + RoBERTa)
    msclap  PATH.pth: {"model": ...}, what msclap's CLAP(model_fp=..., version=...) loads
    hf      PATH/: transformers' save_pretrained folder (model, tokenizer, feature extractor)

The card is markdown beside the file (PATH with .md in place of the suffix; for hf,
PATH/README.md): base model, training data (build id, synthetic or not), the recipe's settings
and, with --zste, the ZSTE figures with their 95% intervals. A model with an order-aware audio
head cannot be written in these formats: refused, unless --without-head, which exports the
pooled model and says so in the card. Nothing is overwritten: an existing PATH is refused.
"""
from __future__ import annotations

import argparse
import importlib
import shutil
import sys
from pathlib import Path

FORMATS = {"laion": "teminal.models.laion.export", "msclap": "teminal.models.msclap.export",
           "hf": "teminal.models.hf.export"}
OWN_FORMAT = {"laion": "laion", "msclap": "msclap", "hf": "hf"}  # family -> its format
CARD_FILE = "README.md"  # an hf folder's model card, as the Hugging Face hub names it


class ExportError(ValueError):
    """A one-line reason an export cannot be written, with what to do instead."""


def card_path(fmt: str, path: Path) -> Path:
    return path / CARD_FILE if fmt == "hf" else path.with_suffix(".md")


def export(model, fmt: str | None, out: str | Path, zste: str | Path | None = None,
           without_head: bool = False) -> tuple[Path, Path]:
    """Write `model` as `fmt` (default: its family's own format) at `out`, and its card;
    returns (the file or folder, the card)."""
    from teminal.models.card import model_card, read_zste

    fmt = fmt or OWN_FORMAT.get(model.family)
    if fmt is None or OWN_FORMAT.get(model.family) != fmt:
        own = OWN_FORMAT.get(model.family)
        raise ExportError(f"model {model.name!r} is family {model.family}: "
                          + (f"it exports as --format {own}" if own else
                             f"no format but its checkpoint folder holds it (formats: "
                             f"{', '.join(f'{f} for family {f}' for f in FORMATS)})"))
    writer = importlib.import_module(FORMATS[fmt])
    writer.check_exportable(model)
    head = model.config.get("audio_head")
    if head and not without_head:
        raise ExportError(
            f"model {model.name!r} has an order-aware audio head ({head.get('type')}, "
            f"{head.get('tokens')} {head.get('source')}), which the {fmt} format cannot hold: "
            f"keep its checkpoint folder (load_model reads it with the head), or pass "
            f"--without-head to export the pooled model without it (the card says so)")
    path = Path(out)
    if writer.SUFFIX and path.suffix != writer.SUFFIX:
        raise ExportError(f"--out {path}: a {fmt} export is a {writer.SUFFIX} file "
                          f"(e.g. {path.with_suffix(writer.SUFFIX)})")
    card = card_path(fmt, path)
    for target in {path, card}:
        if target.exists():
            raise ExportError(f"{target} exists; choose another --out or remove it")
    result = read_zste(Path(zste), model.weights_sha256, model) if zste else None
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    _remove(partial)
    try:
        writer.write(model, partial)
        text = model_card(model, fmt, path, writer.how_to_load(model, path),
                          head_dropped=bool(head), zste=result)
        partial.rename(path)  # a reader never sees half an export
    finally:
        _remove(partial)
    card.write_text(text, encoding="utf-8")
    return path, card


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()


def parse_args(argv):
    p = argparse.ArgumentParser(
        prog="python -m teminal.models.export", allow_abbrev=False,
        description="Write a (post-trained) model in its family's own format with a model card "
                    "beside it: laion -> a .pt that laion-clap's CLAP_Module.load_ckpt reads; "
                    "msclap -> a .pth that msclap's CLAP(model_fp=...) loads; hf -> a "
                    "transformers save_pretrained folder.")
    p.add_argument("model", metavar="MODEL",
                   help="a model spec load_model reads: a training run (RUN_DIR or RUN_DIR/final)"
                        ", laion:PATH.pt, hf:DIR, msclap:PATH.pth?version=...")
    p.add_argument("--out", required=True, metavar="PATH",
                   help="where to write: FILE.pt (laion), FILE.pth (msclap) or a new folder "
                        "(hf); the card goes to FILE.md (hf: PATH/README.md)")
    p.add_argument("--format", choices=sorted(FORMATS), default=None,
                   help="the format to write (default: the model family's own; the small "
                        "family has none but its checkpoint folder)")
    p.add_argument("--zste", metavar="RESULT.json", default=None,
                   help="a ZSTE result of this model (evaluate zste --out): its figures, with "
                        "95%% intervals, go into the card")
    p.add_argument("--without-head", action="store_true",
                   help="export a model that has an order-aware audio head without it (these "
                        "formats cannot hold it; the card says the file is the pooled model)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from teminal.models import load_model

    try:
        model = load_model(args.model)
        path, card = export(model, args.format, args.out, args.zste, args.without_head)
    except (FileNotFoundError, ValueError) as e:  # ModelSpecError and ExportError too
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"wrote {path} and its card {card}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
