"""`pipeline`: build temporal-composition shards and query their catalog.

    pipeline synth esc50 data/esc50-synthetic          # a synthetic stand-in, no download
    pipeline build --root data/esc50-synthetic --out data/build
    pipeline download clotho data/clotho               # or esc50, audiocaps-captions
    pipeline build --dataset clotho --root data/clotho --out data/build-clotho
    pipeline catalog --merge data/build data/build-clotho --out data/build-all
    pipeline info --data data/build
    pipeline query "SELECT relation, count(*) FROM samples GROUP BY ALL" --data data/build
    pipeline render esc50-b-test-000000.forward --data data/build --out forward.wav
    pipeline verify --data data/build --rerender 20    # re-hash every shard and member
"""
from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path

import click

from teminal.pipeline.build_options import build_config, build_flags, build_options
from teminal.pipeline.merge import LINK_MODES
from teminal.pipeline.sources.synth import SYNTHETIC_WRITERS

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


@click.group(context_settings=CONTEXT)
@click.version_option(package_name="teminal", prog_name="pipeline")
def main() -> None:
    """TeminAL data pipeline: source clips -> composed samples -> WebDataset shards, Parquet
    manifests and a DuckDB catalog (OUT/manifests/catalog.duckdb)."""


# ---------------------------------------------------------------------------------------------
# Registered by other parts of the project: `pipeline download` (teminal.pipeline.download);
# the datasets of `pipeline build --dataset` are teminal.pipeline.sources.DATASETS.

def _register_download() -> None:
    from teminal.pipeline.download import download_command

    main.add_command(download_command)


_register_download()
# ---------------------------------------------------------------------------------------------


@main.command(context_settings=CONTEXT)
@click.argument("name", type=click.Choice(sorted(SYNTHETIC_WRITERS)))
@click.argument("out_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--seed", default=0, show_default=True, help="Seed of the procedural sounds.")
@click.option("--clips-per-class-per-fold", default=4, show_default=True,
              help="Clips per class in each of the 5 folds (ESC-50 has 8).")
@click.option("--replace", is_flag=True,
              help="Replace earlier `pipeline synth` output made with other settings (only "
                   "files listed in its SYNTHETIC.files.json are removed).")
def synth(name: str, out_dir: Path, seed: int, clips_per_class_per_fold: int,
          replace: bool) -> None:
    """Write a SYNTHETIC dataset NAME (ESC-50's exact layout) to OUT_DIR.

    Procedural sounds of 10+ classes that differ in spectrum and temporal envelope, so every
    command runs on a fresh machine with no download. The folder carries a SYNTHETIC.md marker
    and every build, catalog and evaluation made from it is flagged synthetic. OUT_DIR must be
    new, empty or earlier synth output holding nothing else: user files are never removed."""
    from teminal.pipeline.sources.synth import write_synthetic

    try:
        root = write_synthetic(name, out_dir, seed=seed, replace=replace,
                               clips_per_class_per_fold=clips_per_class_per_fold, progress=True)
    except (ValueError, OSError) as e:
        raise click.ClickException(str(e)) from None
    n = len(list((root / "audio").glob("*.wav")))
    click.echo(f"wrote {n} SYNTHETIC clips (not real {name}) to {root}")
    click.echo("at the small CPU model's rate, 16 kHz (leave --sample-rate out for LAION-CLAP's "
               "48 kHz):")
    # a folder beside the sources, so the line runs as printed (issue 26.3)
    click.echo("next: " + shlex.join(["pipeline", "build", "--dataset", name, "--root", str(root),
                                      "--out", f"{root}-shards", "--sample-rate", "16000"]))


@main.command(context_settings=CONTEXT)
@build_options
@click.option("--no-progress", is_flag=True, help="No progress bars.")
@click.pass_context
def build(ctx: click.Context, no_progress: bool, **values) -> None:
    """Compose pairs of source clips into WebDataset shards, Parquet manifests and a DuckDB
    catalog. Rerunning a killed build finishes it; a finished build is not redone.

    A build remembers its settings (OUT/manifests/parts/build.json): into an OUT that holds
    one, every option not given is the recorded one (the dataset, root, stages, splits, rate,
    seed, codec, timing, templates ...; not --workers, --executor, --part, --retries), so
    `pipeline build --out OUT` finishes or rebuilds it and `pipeline build --out OUT --stages
    a,b` adds stage b. An option given that would make another build is refused, naming it
    (--overwrite replaces the build)."""
    from teminal.pipeline.build import run_build

    log = lambda m: click.echo(m, err=True)  # noqa: E731
    try:
        given, record = _recorded(ctx, values["out"])
        config = build_config(values, given, record["config"] if record else None)
        if record:
            log(f"{config.out} holds build {record['build_id']}: its settings apply where no "
                f"option is given ({shlex.join(build_flags(config)[2:])})")
        summary = run_build(config, progress=not no_progress, log=log)
    except (ValueError, OSError, RuntimeError) as e:
        raise click.ClickException(str(e)) from None
    click.echo(summary.format())
    if summary.failed:
        sys.exit(1)


def _recorded(ctx: click.Context, out: Path) -> tuple[set[str], dict | None]:
    """(the options given on the command line, the build record in OUT or None): what
    build_config takes the settings not given from. An unreadable record is left to the build
    to refuse."""
    from click.core import ParameterSource

    from teminal.pipeline.layout import read_build_record

    given = {name for name in ctx.params
             if ctx.get_parameter_source(name) not in (ParameterSource.DEFAULT,
                                                       ParameterSource.DEFAULT_MAP)}
    try:
        return given, read_build_record(out)
    except ValueError:
        return given, None


@main.command(context_settings=CONTEXT)
@click.argument("builds", nargs=-1,
                type=click.Path(file_okay=False, exists=True, path_type=Path))
@click.option("--data", type=click.Path(file_okay=False, exists=True, path_type=Path),
              default=None, help="Without --merge: the build folder (the positional OUT is the "
                                 "same).")
@click.option("--merge", is_flag=True,
              help="Union the catalogs of the finished builds given (e.g. one per dataset) into "
                   "one catalog in --out.")
@click.option("--out", "merged", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="With --merge: the folder of the merged catalog (new, or an earlier merge).")
@click.option("--link", default="hard", show_default=True,
              type=click.Choice(LINK_MODES),
              help="With --merge: how shards enter OUT/shards (hard links fall back to symlinks "
                   "across file systems).")
def catalog(builds: tuple[Path, ...], data: Path | None, merge: bool, merged: Path | None,
            link: str) -> None:
    """Write the catalog of a build, or merge several builds' catalogs.

    \b
    pipeline catalog OUT    (or --data OUT)
        merge the manifest fragments of a finished build in OUT (all --part runs) into
        OUT/manifests/*.parquet and OUT/manifests/catalog.duckdb;
    pipeline catalog --merge OUT1 OUT2 ... --out MERGED
        one catalog over several builds (one per dataset): every table is the union, rows keep
        their `dataset` and `build_id`, and MERGED/shards/<stage>/<split>-<dataset>-NNNNNN.tar
        link to the builds' shards, so SQL, `pipeline info` and trainers read MERGED as one
        build."""
    from teminal.pipeline.catalog import write_build_catalog
    from teminal.pipeline.merge import merge_catalogs

    if not merge:
        if merged is not None or len(builds) + (data is not None) != 1:
            raise click.UsageError("give one build folder, or --merge OUT1 OUT2 ... --out MERGED")
        try:
            path = write_build_catalog(data or builds[0])
        except (FileNotFoundError, RuntimeError, ValueError) as e:
            raise click.ClickException(str(e)) from None
        click.echo(f"catalog written: {path}")
        return
    if data is not None or not builds:
        raise click.UsageError("--merge takes the builds as OUT1 OUT2 ..., not --data")
    if merged is None:
        raise click.UsageError("--merge needs --out MERGED (the folder of the merged catalog)")
    try:
        summary = merge_catalogs(builds, merged, link=link, log=lambda m: click.echo(m, err=True))
    except (FileNotFoundError, FileExistsError, ValueError) as e:
        raise click.ClickException(str(e)) from None
    click.echo(summary.format())


def _default_data() -> Path:
    return Path(os.environ.get("TEMINAL_OUT", "."))


@main.command(context_settings=CONTEXT)
@click.argument("sql")
@click.option("--data", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Build folder holding manifests/catalog.duckdb (default: $TEMINAL_OUT or .).")
@click.option("--max-rows", default=100, show_default=True, help="Rows to print (0: all).")
@click.option("--max-width", default=60, show_default=True, help="Truncate cells to this width.")
def query(sql: str, data: Path | None, max_rows: int, max_width: int) -> None:
    """Run SQL on the catalog (read-only) and print the result as a table.

    Tables: sources, samples, shards, rejects, builds (see docs/ARCHITECTURE.md)."""
    from teminal.manifests.catalog import connect, is_damage, unreadable_message

    import duckdb

    data = data or _default_data()
    if not sql.strip().strip(";").strip():
        raise click.UsageError('the query is empty: give SQL, for example '
                               '"SELECT relation, count(*) FROM samples GROUP BY ALL"')
    try:
        con = connect(data)
    except FileNotFoundError as e:
        raise click.ClickException(str(e)) from None
    try:
        cur = con.execute(sql)
        if cur is None:  # only comments
            raise click.UsageError("the query holds no statement (only comments?): give SQL, "
                                   'for example "SELECT count(*) FROM samples"')
        if cur.description is None:
            click.echo("(no result)")
            return
        names = [d[0] for d in cur.description]
        rows = cur.fetchmany(max_rows) if max_rows else cur.fetchall()
        more = bool(max_rows) and cur.fetchone() is not None
    except duckdb.Error as e:
        if is_damage(e):
            raise click.ClickException(unreadable_message(data, e)) from None
        hint = " (the catalog is read-only and offline: no files, network or extensions)" \
            if isinstance(e, (duckdb.PermissionException, duckdb.InvalidInputException)) else ""
        raise click.ClickException(f"query failed: {' '.join(str(e).split())}{hint}") from None
    finally:
        con.close()
    click.echo(format_table(names, rows, max_width))
    click.echo(f"({len(rows)} row{'s' if len(rows) != 1 else ''}"
               f"{'; more not shown, raise --max-rows' if more else ''})")


def _build_folder(out: Path | None, data: Path | None) -> Path:
    """The build folder of a command that reads one: --data (as every command that reads a
    build takes it) or the positional OUT (the earlier form, kept), else $TEMINAL_OUT or ."""
    if out is not None and data is not None and out != data:
        raise click.UsageError(f"two build folders given: {out} and --data {data}; give one")
    return data or out or _default_data()


DATA_OPTION = click.option(
    "--data", type=click.Path(file_okay=False, path_type=Path), default=None,
    help="Build folder holding manifests/catalog.duckdb (default: $TEMINAL_OUT or .); the "
         "positional OUT is the same.")


@main.command(context_settings=CONTEXT)
@click.argument("out", type=click.Path(file_okay=False, path_type=Path), required=False)
@DATA_OPTION
def info(out: Path | None, data: Path | None) -> None:
    """Summary of the build in OUT (or --data): sources, samples by stage/split/relation,
    shards, bytes, rejects, and whether the input was synthetic."""
    from teminal.manifests.catalog import Catalog

    out = _build_folder(out, data)
    try:
        with Catalog.open(out) as catalog:
            _echo_info(catalog)
    except (FileNotFoundError, ValueError) as e:   # no catalog, a damaged one, a bad config
        raise click.ClickException(str(e)) from None


def _echo_info(catalog) -> None:
    """The summary `pipeline info` prints, from an open Catalog."""
    for build in catalog.builds():
        cfg = build.config
        flag = "   *** SYNTHETIC input: not real data ***" if build.synthetic else ""
        click.echo(f"build {build.build_id} (teminal {build.version}){flag}")
        comp = cfg.get("compose", {})
        click.echo(f"  dataset {cfg.get('dataset')}  root {cfg.get('root')}  seed {cfg.get('seed')}  "
                   f"{comp.get('sample_rate')} Hz x {comp.get('clip_seconds')} s  "
                   f"codec {cfg.get('codec')}  templates {comp.get('template_set')}")
        click.echo(f"  timing  {_timing_text(comp)}")
    click.echo("\nsources by dataset, split")
    _echo_table(catalog.sources_summary())
    click.echo("\nsamples by dataset, stage, split, relation")
    _echo_table(catalog.samples_summary())
    click.echo("\ntiming: where the second part starts (fraction of the clip)")
    _echo_table(catalog.timing_summary())
    click.echo("\nshards")
    _echo_table(catalog.shards_summary())
    total_bytes, count = catalog.shard_totals()
    click.echo(f"total {count} shards, {total_bytes / 1e6:.1f} MB")
    n_rejects = catalog.reject_count()
    click.echo(f"\nrejects: {n_rejects}")
    if n_rejects:
        _echo_table(catalog.rejects_summary())


def _timing_text(compose: dict) -> str:
    """A build's timing settings (its builds-table config names only those it changed)."""
    from teminal.pipeline.compose import TIMING_DEFAULTS

    if all(name not in compose for name in TIMING_DEFAULTS):
        return "junction 0.5 (the paper's midpoint)  gap 0 s  overlay start 0"

    def shown(name: str, unit: str = "") -> str:
        lo, hi = compose.get(name, TIMING_DEFAULTS[name])
        return f"{lo:g}{unit}" if lo == hi else f"{lo:g}..{hi:g}{unit} (drawn per group)"

    return (f"junction {shown('junction')}, reversed mirrored  gap {shown('gap', ' s')}  "
            f"overlay start {shown('overlay_start')}")


@main.command(context_settings=CONTEXT)
@click.argument("out", type=click.Path(file_okay=False, path_type=Path), required=False)
@DATA_OPTION
@click.option("--rerender", default=0, show_default=True, type=click.IntRange(min=0),
              help="Also re-render N recipes (a fixed sample) from the sources and compare "
                   "their sha256 with the stored members.")
@click.option("--root", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="With --rerender: where the sources are now, if the dataset moved.")
def verify(out: Path | None, data: Path | None, rerender: int, root: Path | None) -> None:
    """Re-hash every shard and member of the build in OUT (or --data) against its catalog:
    every row has its member and every member its row; lists every problem, exit status 1 on
    any."""
    from teminal.pipeline.verify import verify_build

    out = _build_folder(out, data)
    try:
        report = verify_build(out, rerender=rerender, root=root)
    except (FileNotFoundError, ValueError) as e:
        raise click.ClickException(str(e)) from None
    click.echo(report.format())
    if not report.ok:
        sys.exit(1)


@main.command(context_settings=CONTEXT)
@click.argument("key")
@click.option("--data", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Build folder (default: $TEMINAL_OUT or .).")
@click.option("--out", "wav_out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the re-rendered audio to this WAV file.")
@click.option("--root", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where the sources are now, if the dataset folder moved since the build.")
def render(key: str, data: Path | None, wav_out: Path | None, root: Path | None) -> None:
    """Re-render sample KEY (<group_key>.<relation>) from its catalog row and the source files,
    and check its sha256 against the stored shard member (exit status 1 on mismatch)."""
    from teminal.pipeline.render import rerender

    try:
        result = rerender(data or _default_data(), key, root=root)
    except (FileNotFoundError, KeyError, ValueError) as e:
        raise click.ClickException(str(e).strip("'\"")) from None
    if wav_out:
        from teminal.pipeline.audio import write_wav

        wav_out.parent.mkdir(parents=True, exist_ok=True)
        try:
            write_wav(wav_out, result.audio, result.sample_rate)
        except OSError as e:
            raise click.ClickException(str(e)) from None
        click.echo(f"wrote {wav_out} ({len(result.audio) / result.sample_rate:.2f} s at "
                   f"{result.sample_rate} Hz)")
    click.echo(f"{key}: {result.caption!r}  sources {', '.join(result.source_ids)}")
    click.echo(f"  catalog sha256 {result.expected}")
    click.echo(f"  shard member   {result.stored}")
    click.echo(f"  re-rendered    {result.actual}")
    if result.match:
        click.echo("match: the re-rendered member is identical to the stored one")
    else:
        click.echo("MISMATCH: the re-rendered member differs from the stored one", err=True)
        sys.exit(1)


def format_table(names: list[str], rows: list[tuple], max_width: int = 60) -> str:
    """A plain-text table: header, rule, rows; long cells cut with an ellipsis."""
    def cell(v) -> str:
        s = "NULL" if v is None else (f"{v:.6g}" if isinstance(v, float) else str(v))
        s = " ".join(s.split())
        return s if len(s) <= max_width else s[:max_width - 1] + "…"

    cells = [[cell(v) for v in row] for row in rows]
    widths = [max([len(n)] + [len(r[i]) for r in cells]) for i, n in enumerate(names)]
    numeric = [all(isinstance(row[i], (int, float)) or row[i] is None for row in rows) and rows
               for i in range(len(names))]

    def line(values):
        return "  ".join(v.rjust(w) if num else v.ljust(w)
                         for v, w, num in zip(values, widths, numeric)).rstrip()

    out = [line(names), "  ".join("-" * w for w in widths)]
    out += [line(r) for r in cells]
    return "\n".join(out)


def _echo_table(table) -> None:
    click.echo(format_table(table.names, table.rows))


if __name__ == "__main__":  # pragma: no cover
    main()
