"""`evaluate`: ZSTE, zero-shot classification, retrieval, and comparison of results.

    evaluate zste --model SPEC --data OUT --out RESULT.json [--plots DIR]
    evaluate zeroshot --model SPEC --dataset esc50 --root DIR --out RESULT.json [--folds 1|all]
    evaluate retrieval --model SPEC --dataset audiocaps|clotho --root DIR --out RESULT.json
    evaluate compare A.json B.json ... [--plots DIR]
    evaluate show RESULT.json

SPEC is what the trainer takes: `small`, `laion:PATH.pt`, `hf:DIR`, `msclap:PATH.pth?version=Y`,
or a project checkpoint folder (teminal.models.registry).
"""
from __future__ import annotations

import sys
from pathlib import Path

import click

from teminal.evaluate.options import (SWEEP_JUNCTIONS, TEMPLATE_CHOICES, ZEROSHOT_DATASETS,
                                      parse_junctions)
from teminal.pipeline.sources import retrieval_datasets


def _check_workers(workers: int | None) -> None:
    """More decode processes than the machine can run are refused before the model loads."""
    from teminal.evaluate.workers import workers_problem

    problem = workers_problem("--workers", workers) if workers is not None else None
    if problem:
        raise click.BadParameter(problem, param_hint="--workers")


def _check_batch_memory(model, batch_size: int) -> None:
    """A batch of clips at the model's rate and length, decoded and on its way to the model
    (float32, twice), must fit in the memory available."""
    from teminal.pipeline.machine import memory_problem

    clip = int(model.clip_samples)
    problem = memory_problem("--batch-size", batch_size, 2 * batch_size * clip * 4,
                             f"{batch_size} clips of {clip} samples (twice: decoded and "
                             f"embedded)")
    if problem:
        raise click.BadParameter(problem, param_hint="--batch-size")


def _device(device: str | None) -> str:
    """--device, or the accelerator when there is one (cuda, else mps, else cpu); a device
    this machine lacks is one line here, before any model is built on it."""
    import torch

    mps = getattr(torch.backends, "mps", None)
    has = {"cuda": torch.cuda.is_available(), "mps": bool(mps and mps.is_available()),
           "cpu": True}
    if device is None:
        return next(kind for kind, present in has.items() if present)
    kind, _, index = device.partition(":")
    if kind not in has:
        raise click.ClickException(f"--device {device}: give cuda, cuda:N, mps or cpu (or "
                                   f"leave it out for the accelerator there is)")
    if not has[kind]:
        raise click.ClickException(
            f"--device {device}: no {kind} device is usable here (torch: "
            f"{'torch.cuda.is_available()' if kind == 'cuda' else 'mps.is_available()'} is "
            f"False); use --device cpu, or leave --device out to use the accelerator there is")
    if kind == "cuda" and index and (not index.isdigit() or
                                     int(index) >= torch.cuda.device_count()):
        raise click.ClickException(f"--device {device}: this machine has "
                                   f"{torch.cuda.device_count()} CUDA device(s), cuda:0..")
    return device


def _model_for(spec: str, device: str | None, seed: int, batch_size: int,
               workers: int | None):
    """The model, after checking the device and the counts that depend only on the machine,
    and before the batch's memory, which depends on the model's clip length."""
    device = _device(device)
    _check_workers(workers)
    model = _load_model(spec, device, seed)
    _check_batch_memory(model, batch_size)
    return model


def _load_model(spec: str, device: str, seed: int):
    import torch

    torch.manual_seed(seed)
    try:
        from teminal.models import load_model
    except ImportError as e:
        raise click.ClickException(f"cannot import teminal.models.load_model ({e})") from None
    try:
        model = load_model(spec, device=device)
    except (FileNotFoundError, ValueError) as e:  # ModelSpecError is a ValueError
        raise click.ClickException(f"model {spec!r}: {e}") from None
    model.eval()
    return model


def _finish(result: dict, out: Path, quiet: bool) -> None:
    from teminal.evaluate.report import format_table, write_result

    write_result(result, out)
    if not quiet:
        click.echo(format_table(result))  # warnings included, above the table
    else:
        for warning in result.get("warnings", []):
            click.echo(f"WARNING: {warning}", err=True)
    click.echo(f"wrote {out}")


def _argv() -> list[str]:
    return ["evaluate", *sys.argv[1:]]


common = [
    click.option("--model", "spec", required=True, metavar="SPEC",
                 help="`small`, `laion:PATH.pt`, `hf:DIR`, `msclap:PATH.pth?version=2022|2023` "
                      "or a checkpoint folder (README, Models)."),
    click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True,
                 help="Where to write the result JSON."),
    click.option("--seed", type=click.IntRange(0, 2**32 - 1), default=0, show_default=True,
                 help="Seed of everything random in the evaluation (the same seed and inputs "
                      "give the same numbers)."),
    click.option("--batch-size", type=click.IntRange(min=1), default=32, show_default=True,
                 help="Audio clips per embedding call (refused when they would not fit in "
                      "memory)."),
    click.option("--device", default=None, metavar="cuda|cuda:N|mps|cpu",
                 help="Where the model runs. Default: the accelerator there is (cuda, else "
                      "mps, else cpu)."),
    click.option("--label", default=None, help="Name of this model in comparisons (default: "
                                               "derived from the spec)."),
    click.option("--quiet", is_flag=True, help="Do not print the table or progress bars."),
    click.option("--workers", type=click.IntRange(min=0), default=None,
                 help="Processes that decode and render the audio while the model embeds "
                      "(0: in the main process; results are the same). Default: none for a "
                      "model on the CPU (its embedding is far slower than decoding), else "
                      "CPUs - 1, at most 8. At most two per CPU (8 on small machines)."),
]


def with_common(f):
    for option in reversed(common):
        f = option(f)
    return f


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="teminal", prog_name="evaluate")
def main():
    """Evaluate audio-language models: ZSTE, zero-shot classification, retrieval."""


@main.command()
@with_common
@click.option("--data", type=click.Path(exists=True, file_okay=False, path_type=Path), required=True,
              help="A `pipeline build` output folder (OUT); its test split is evaluated.")
@click.option("--templates", type=click.Choice(TEMPLATE_CHOICES), default="all",
              show_default=True,
              help="'paper': the paper's wording only; 'heldout' or 'all': also task 3 under every "
                   "wording held out of training (task 3's main figure always uses the paper's).")
@click.option("--train-data", type=click.Path(exists=True, file_okay=False, path_type=Path),
              default=None, help="The build the model was trained on (default: the one recorded "
                                 "in the checkpoint); defines seen vs unseen class pairs.")
@click.option("--max-items", type=click.IntRange(min=1), default=None,
              help="Evaluate at most N single clips and N pair groups (quick runs).")
@click.option("--split", default="test", show_default=True,
              help="The catalog split whose stage-B groups are scored.")
@click.option("--plots", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Write the order-task confusion PNG (and, with --junctions, the timing "
                   "sweep's) into this folder.")
@click.option("--junctions", default=None, metavar="J1,J2,...",
              callback=lambda ctx, param, value: _junctions(value),
              help="Timing sweep: also score task 3 and CompA-order with the second event at "
                   "each of these fractions of the clip (re-rendered from the catalog's "
                   "recipes and the sources, no rebuild), e.g. "
                   + ",".join(f"{j:g}" for j in SWEEP_JUNCTIONS) + ".")
@click.option("--sweep-items", type=click.IntRange(min=1), default=None,
              help="Sweep only the first N test groups (default: every group scored).")
@click.option("--root", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where the build's source dataset is now, if it moved since the build (the "
                   "single clips and the timing sweep render from it).")
def zste(spec, out, seed, batch_size, device, label, quiet, workers, data, templates, train_data,
         max_items, split, plots, junctions, sweep_items, root):
    """The five ZSTE tasks, CompA-order scores, seen/unseen pairs, held-out wordings and, with
    --junctions, the timing sweep."""
    from teminal.evaluate import zste as Z

    from teminal.pipeline.lock import read_lock

    model = _model_for(spec, device, seed, batch_size, workers)
    try:
        with read_lock(data, "an evaluation"):  # no build replaces the data while it is read
            result = Z.run(model, spec, data, seed=seed, batch_size=batch_size,
                           templates=templates, train_data=train_data, max_items=max_items,
                           split=split, label=label, argv=_argv(), progress=not quiet,
                           workers=workers, junctions=junctions, sweep_items=sweep_items,
                           root=root)
    except (FileNotFoundError, FileExistsError, ValueError) as e:
        raise click.ClickException(str(e)) from None
    _finish(result, out, quiet)
    if plots is not None and "task3_order" in result["metrics"]:
        from teminal.evaluate.plots import plot_order_confusion, plot_timing_sweep

        name = f"order_confusion_{result['label']}.png"
        click.echo(f"wrote {plot_order_confusion(result, plots / name)}")
        if "timing_sweep" in result["metrics"]:
            name = f"timing_sweep_{result['label']}.png"
            click.echo(f"wrote {plot_timing_sweep([result], [result['label']], plots / name)}")


def _junctions(value: str | None) -> tuple[float, ...]:
    """--junctions, checked before the model loads."""
    if value is None:
        return ()
    try:
        return parse_junctions(value)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--junctions") from None


@main.command()
@with_common
@click.option("--dataset", type=click.Choice(ZEROSHOT_DATASETS), default="esc50",
              show_default=True, help="The labelled dataset whose classes are the prompts.")
@click.option("--root", type=click.Path(exists=True, file_okay=False, path_type=Path), required=True,
              help="ESC-50 folder (official layout, real or synthetic).")
@click.option("--folds", default="all", show_default=True,
              help="'1' (LAION-CLAP's protocol), 'all' (MS-CLAP's) or a list such as '1,2'.")
def zeroshot(spec, out, seed, batch_size, device, label, quiet, workers, dataset, root, folds):
    """Zero-shot classification with "This is a sound of {label}.", per fold and overall."""
    from teminal.evaluate import zeroshot as ZS

    try:
        chosen = ZS.parse_folds(folds)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--folds") from None
    model = _model_for(spec, device, seed, batch_size, workers)
    try:
        result = ZS.run(model, spec, root, chosen, batch_size=batch_size, seed=seed, label=label,
                        argv=_argv(), progress=not quiet, workers=workers)
    except (FileNotFoundError, ValueError) as e:
        raise click.ClickException(str(e)) from None
    _finish(result, out, quiet)


@main.command()
@with_common
@click.option("--dataset", type=click.Choice(retrieval_datasets()), required=True,
              help="The captioned dataset (its layout: README, Data).")
@click.option("--root", type=click.Path(exists=True, file_okay=False, path_type=Path),
              required=True, help="The dataset folder (`pipeline download NAME` fills it).")
@click.option("--split", default="test", show_default=True,
              help="AudioCaps test / Clotho evaluation ('test').")
@click.option("--max-items", type=click.IntRange(min=1), default=None,
              help="Evaluate at most N clips.")
def retrieval(spec, out, seed, batch_size, device, label, quiet, workers, dataset, root, split,
              max_items):
    """Text->audio and audio->text R@1/5/10 and mAP@10 (LAION-CLAP's definitions)."""
    from teminal.evaluate import retrieval as R

    model = _model_for(spec, device, seed, batch_size, workers)
    try:
        result = R.run(model, spec, dataset, root, split, batch_size=batch_size, seed=seed,
                       max_items=max_items, label=label, argv=_argv(), progress=not quiet,
                       workers=workers)
    except (FileNotFoundError, ValueError) as e:
        raise click.ClickException(str(e)) from None
    _finish(result, out, quiet)


@main.command()
@click.argument("results", nargs=-1, required=True,
                type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--labels", default=None, help="Comma-separated names, one per result.")
@click.option("--plots", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Write the per-task bars (compare.png) into this folder, as zste's --plots.")
@click.option("--plot", type=click.Path(dir_okay=False, path_type=Path), default=None,
              hidden=True, help="The PNG itself (the earlier spelling of --plots).")
def compare(results, labels, plots, plot):
    """Print results side by side, with differences against the first."""
    from teminal.evaluate.report import compare_table, load_result, unique_labels

    try:
        loaded = [load_result(p) for p in results]
    except (FileNotFoundError, ValueError) as e:
        raise click.ClickException(str(e)) from None
    names = [x.strip() for x in labels.split(",")] if labels else unique_labels(loaded)
    if len(names) != len(loaded):
        raise click.BadParameter(f"{len(names)} labels for {len(loaded)} results", param_hint="--labels")
    click.echo(compare_table(loaded, names))
    plot = plot or (plots / "compare.png" if plots is not None else None)
    if plot is not None:
        from teminal.evaluate.plots import plot_compare, plot_timing_sweep

        click.echo(f"wrote {plot_compare(loaded, names, plot)}")
        if any("timing_sweep" in r["metrics"] for r in loaded):
            sweep = plot.with_name(f"{plot.stem}_timing_sweep.png")
            click.echo(f"wrote {plot_timing_sweep(loaded, names, sweep)}")


@main.command()
@click.argument("result", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def show(result):
    """Print the table of a result JSON."""
    from teminal.evaluate.report import format_table, load_result

    try:
        click.echo(format_table(load_result(result)))
    except ValueError as e:
        raise click.ClickException(str(e)) from None


if __name__ == "__main__":
    main()
