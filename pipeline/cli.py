"""`pipeline`: build temporal-composition shards and query their catalog.

    pipeline synth esc50 data/esc50-synthetic          # a synthetic stand-in, no download
    pipeline build --root data/esc50-synthetic --out data/build
    pipeline download clotho data/clotho               # or esc50, audiocaps-captions
    pipeline build --dataset clotho --root data/clotho --out data/build-clotho
    pipeline catalog --merge data/build data/build-clotho --out data/build-all
    pipeline info data/build
    pipeline query "SELECT relation, count(*) FROM samples GROUP BY ALL" --data data/build
    pipeline render esc50-b-test-000000.forward --data data/build --out forward.wav
    pipeline verify data/build --rerender 20           # re-hash every shard and member
"""
from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Callable

import click

from teminal.pipeline.compose import ComposeConfig, PAD_POLICIES

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


@click.group(context_settings=CONTEXT)
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


def _dataset_names() -> list[str]:
    from teminal.pipeline.sources import DATASETS

    return sorted(DATASETS)


@main.command(context_settings=CONTEXT)
@click.argument("name", type=click.Choice(["esc50"]))
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
    click.echo(f"next: pipeline build --dataset {name} --root {root} --out OUT")


@main.command(context_settings=CONTEXT)
@click.option("--dataset", default="esc50", show_default=True,
              type=click.Choice(_dataset_names()),
              help="Source dataset reader: esc50 (labels), audiocaps or clotho (captions; "
                   "composite captions join the clips' captions).")
@click.option("--root", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Dataset folder. Default: $TEMINAL_DATA/<dataset>, else ./data/ESC-50-master, "
                   "./data/audiocaps or ./data/clotho.")
@click.option("--out", "out", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Output folder: OUT/shards/<stage>/<split>-NNNNNN.tar and OUT/manifests/.")
@click.option("--stages", default="a,b", show_default=True,
              help="Stages to build: a = {single, double}, b = {forward, reversed, overlay}.")
@click.option("--splits", "splits", default=None,
              help="Split -> source units. ESC-50 folds, default test=5,val=4,train=1,2,3; "
                   "AudioCaps/Clotho: their official splits by default (Clotho development, "
                   "validation, evaluation = train, val, test), or e.g. train=train,val;test=test.")
@click.option("--groups", default=None,
              help="Groups (pairs) per split and stage: N for train, val/test scaled by their "
                   "clip count; or explicit train=N,val=N,test=N. Default: --groups-per-clip.")
@click.option("--groups-per-clip", default=1.0, show_default=True, type=float,
              help="Without --groups: each split gets this many groups per clip (each clip then "
                   "appears in about twice as many groups per stage).")
@click.option("--seed", default=0, show_default=True, help="Seed of pairing, SNRs, augmentation.")
@click.option("--workers", "-j", default=1, show_default=True,
              help="Processes (with --executor ray and no --ray-address: the CPUs of the local "
                   "Ray instance); output is byte-identical for any number.")
@click.option("--executor", default="local", show_default=True, type=click.Choice(["local", "ray"]),
              help="Where shards render: local processes, or one Ray task per shard (needs "
                   "pip install -e '.[ray]'). With a Ray cluster, --root and --out must be on a "
                   "filesystem every node sees, with the same teminal installed on every node.")
@click.option("--ray-address", default=None,
              help="--executor ray: the cluster to join (e.g. auto, or HEAD:6379); default: "
                   "start a local Ray instance with --workers CPUs.")
@click.option("--retries", default=2, show_default=True,
              help="Extra attempts of a shard that fails; then it is recorded as failed, the "
                   "other shards are kept and the exit status is 1 (rerun to retry it).")
@click.option("--shard-size", default=100, show_default=True, help="Groups per shard.")
@click.option("--sample-rate", default=48000, show_default=True,
              help="Rate of the rendered audio (LAION-CLAP: 48000; a small CPU model: 16000).")
@click.option("--clip-seconds", default=10.0, show_default=True,
              help="Length of every rendered sample; concatenations get two slots split at "
                   "--junction.")
@click.option("--codec", default="flac", show_default=True, type=click.Choice(["flac", "pcm"]),
              help="Member encoding: FLAC, or raw int16 .npy (about 2.3x bytes, ~50x faster to "
                   "decode).")
@click.option("--template-set", default="paper", show_default=True,
              type=click.Choice(["paper", "extended"]),
              help="Caption templates (captioned datasets use their captioned flavour, e.g. "
                   "\"<caption a>, followed by <caption b>\").")
@click.option("--name-template", default=None,
              help="AudioCaps/Clotho: an extra audio file-name form tried first, e.g. "
                   "\"{youtube_id}.{ext}\" (AudioCaps fields: youtube_id, start_time, end_time, "
                   "audiocap_id, ext; Clotho: file_name, stem, ext).")
@click.option("--augment", default=None,
              help="audiomentations chain on source parts, e.g. gain,pitch,stretch,noise "
                   "(seeded per group, parameters recorded). Default: off.")
@click.option("--snr-range", default="-5,5", show_default=True,
              help="Overlay SNR range in dB (level of a over b), drawn per group.")
@click.option("--junction", default="0.5", show_default=True,
              help="Where the second event of double/forward starts, as a fraction of the clip: "
                   "X, or LOW,HIGH drawn per group; reversed mirrors it (1 - X), so each event "
                   "keeps its length. 0.5 is the paper's midpoint.")
@click.option("--gap", default="0", show_default=True,
              help="Seconds of silence before the second event of a concatenation: X, or "
                   "LOW,HIGH drawn per group. Each event keeps at least 0.5 s (0.1 of the clip "
                   "if shorter).")
@click.option("--overlay-start", default="0", show_default=True,
              help="Where an overlay's second sound starts, as a fraction of the clip: X, or "
                   "LOW,HIGH drawn per group; it then plays to the end (a partial overlap).")
@click.option("--pad", default="repeat", show_default=True, type=click.Choice(PAD_POLICIES),
              help="Padding of short parts of singles and overlays (concatenations zero-pad).")
@click.option("--target-db", default=-20.0, show_default=True, type=float,
              help="Loudness of every part before mixing (dBFS RMS); part of the build id.")
@click.option("--ceiling", default=0.99, show_default=True, type=float,
              help="Peak limit of every composite (linear full scale); part of the build id.")
@click.option("--part", default=None,
              help="i/n: build only shards i, i+n, ... (fan a build out over machines; the "
                   "catalog is written when all parts are done, or with `pipeline catalog`).")
@click.option("--overwrite", is_flag=True,
              help="Replace a different build already in OUT (default: refuse).")
@click.option("--keep-cache", is_flag=True,
              help="Keep the decoded source pool (OUT/.cache) after the build.")
@click.option("--no-progress", is_flag=True, help="No progress bars.")
def build(dataset, root, out, stages, splits, groups, groups_per_clip, seed, workers, executor,
          ray_address, retries, shard_size,
          sample_rate, clip_seconds, codec, template_set, name_template, augment, snr_range,
          junction, gap, overlay_start, pad, target_db, ceiling, part, overwrite, keep_cache,
          no_progress) -> None:
    """Compose pairs of source clips into WebDataset shards, Parquet manifests and a DuckDB
    catalog. Rerunning a killed build finishes it; a finished build is not redone."""
    from teminal.pipeline.build import run_build
    from teminal.pipeline.config import BuildConfig
    from teminal.pipeline.sources import dataset_spec

    try:
        spec = dataset_spec(dataset)
        lo, hi = parse_snr_range(snr_range)
        config = BuildConfig(
            out=str(out), dataset=dataset, root=str(root) if root else None,
            stages=tuple(s.strip().lower() for s in stages.split(",") if s.strip()),
            splits=parse_splits(splits, spec.split_values), groups=parse_groups(groups),
            groups_per_clip=groups_per_clip, seed=seed, shard_size=shard_size, codec=codec,
            compose=ComposeConfig(sample_rate=sample_rate, clip_seconds=clip_seconds, pad=pad,
                                  snr_range=(lo, hi), template_set=template_set,
                                  augment=augment or None, key_prefix=dataset,
                                  target_db=target_db, ceiling=ceiling,
                                  junction=parse_range("--junction", junction),
                                  gap=parse_range("--gap", gap),
                                  overlay_start=parse_range("--overlay-start", overlay_start)),
            workers=workers, part=parse_part(part), overwrite=overwrite, keep_cache=keep_cache,
            name_template=name_template, executor=executor, ray_address=ray_address,
            retries=retries)
        summary = run_build(config, progress=not no_progress, log=lambda m: click.echo(m, err=True))
    except (ValueError, OSError, RuntimeError) as e:
        raise click.ClickException(str(e)) from None
    click.echo(summary.format())
    if summary.failed:
        sys.exit(1)


@main.command(context_settings=CONTEXT)
@click.argument("builds", nargs=-1, required=True,
                type=click.Path(file_okay=False, exists=True, path_type=Path))
@click.option("--merge", is_flag=True,
              help="Union the catalogs of the finished builds given (e.g. one per dataset) into "
                   "one catalog in --out.")
@click.option("--out", "merged", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="With --merge: the folder of the merged catalog (new, or an earlier merge).")
@click.option("--link", default="hard", show_default=True,
              type=click.Choice(["hard", "symlink", "copy"]),
              help="With --merge: how shards enter OUT/shards (hard links fall back to symlinks "
                   "across file systems).")
def catalog(builds: tuple[Path, ...], merge: bool, merged: Path | None, link: str) -> None:
    """Write the catalog of a build, or merge several builds' catalogs.

    \b
    pipeline catalog OUT
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
        if merged is not None or len(builds) != 1:
            raise click.UsageError("give one build folder, or --merge OUT1 OUT2 ... --out MERGED")
        try:
            path = write_build_catalog(builds[0])
        except (FileNotFoundError, RuntimeError, ValueError) as e:
            raise click.ClickException(str(e)) from None
        click.echo(f"catalog written: {path}")
        return
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


@main.command(context_settings=CONTEXT)
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
def info(out: Path) -> None:
    """Summary of the build in OUT: sources, samples by stage/split/relation, shards, bytes,
    rejects, and whether the input was synthetic."""
    from teminal.manifests.catalog import Catalog

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
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
@click.option("--rerender", default=0, show_default=True, type=click.IntRange(min=0),
              help="Also re-render N recipes (a fixed sample) from the sources and compare "
                   "their sha256 with the stored members.")
@click.option("--root", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="With --rerender: where the sources are now, if the dataset moved.")
def verify(out: Path, rerender: int, root: Path | None) -> None:
    """Re-hash every shard and member of the build in OUT against its catalog: every row has
    its member and every member its row; lists every problem, exit status 1 on any."""
    from teminal.pipeline.verify import verify_build

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


# ---------------------------------------------------------------------------------------------
# Option parsing of `pipeline build`

def parse_splits(text: str | None, value: Callable[[str], object] = str) -> dict[str, list] | None:
    """"test=5,val=4,train=1,2,3" -> {"test": [5], "val": [4], "train": [1, 2, 3]}.

    A bare value after a comma extends the split named before it; ";" separates as well."""
    if not text:
        return None
    out: dict[str, list] = {}
    current = None
    for token in re.split(r"[,;]", text):
        token = token.strip()
        if not token:
            continue
        if "=" in token:
            current, _, token = (t.strip() for t in token.partition("="))
            if not current or current in out:
                raise ValueError(f"--splits {text!r}: split name {current!r} empty or repeated")
            out[current] = []
        if current is None:
            raise ValueError(f"--splits {text!r}: expected name=value first, e.g. test=5,val=4,train=1,2,3")
        if token:
            try:
                out[current].append(value(token))
            except ValueError:
                raise ValueError(f"--splits {text!r}: bad value {token!r} for split {current!r}") from None
    return out


def parse_groups(text: str | None) -> int | dict[str, int] | None:
    """"2000" -> 2000; "train=2000,val=200,test=200" -> {...}; None/"" -> None."""
    if not text:
        return None
    text = text.strip()
    try:
        if "=" not in text:
            return int(text)
        out = {}
        for item in text.split(","):
            name, _, n = item.partition("=")
            if name.strip() in out or not name.strip():
                raise ValueError
            out[name.strip()] = int(n)
        return out
    except ValueError:
        raise ValueError(f"--groups {text!r}: expected N or split=N,split=N with each split "
                         f"once (e.g. train=2000,val=200)") from None


def parse_snr_range(text: str) -> tuple[float, float]:
    """"-5,5" -> (-5.0, 5.0); anything else names the option and the expected form."""
    parts = [p.strip() for p in str(text).split(",")]
    try:
        if len(parts) != 2:
            raise ValueError
        lo, hi = float(parts[0]), float(parts[1])
    except ValueError:
        raise ValueError(f"--snr-range {text!r}: expected two numbers LOW,HIGH in dB, for "
                         f"example -5,5 (finite, -60..60, LOW <= HIGH)") from None
    return lo, hi


def parse_range(option: str, text: str) -> tuple[float, float]:
    """"0.3" -> (0.3, 0.3); "0.3,0.7" -> (0.3, 0.7): a fixed value or a LOW,HIGH range drawn
    per group (ComposeConfig checks the values)."""
    parts = [p.strip() for p in str(text).split(",")]
    try:
        if len(parts) not in (1, 2):
            raise ValueError
        values = [float(p) for p in parts]
    except ValueError:
        raise ValueError(f"{option} {text!r}: expected a number X or two numbers LOW,HIGH, for "
                         f"example 0.3 or 0.2,0.8") from None
    return values[0], values[-1]


def parse_part(text: str | None) -> tuple[int, int]:
    if not text:
        return (0, 1)
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if not m:
        raise ValueError(f"--part {text!r}: expected i/n, e.g. 0/4")
    return int(m.group(1)), int(m.group(2))


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
