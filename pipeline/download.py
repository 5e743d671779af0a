"""`pipeline download`: fetch public dataset archives into the layout the readers expect.

DEST is optional: it defaults to the folder `pipeline build --dataset NAME` reads by default
(the dataset's `SPEC.default_root()`: $TEMINAL_DATA/<dataset>, else data/ESC-50-master,
data/clotho, data/audiocaps), so `pipeline download esc50` then `pipeline build --dataset esc50
--out OUT` need no paths. DEST is always the dataset root, the folder to give `--root`.

    esc50               the ESC-50 GitHub master zip        -> DEST/{audio,meta,...}
    clotho              Clotho v2.1 from Zenodo (record 4783391): three audio .7z archives and
                        the caption and metadata CSVs       -> DEST/clotho_audio_files/<split>/,
                                                               DEST/clotho_csv_files/*.csv
    audiocaps-captions  the three AudioCaps CSVs (GitHub)   -> DEST/{train,val,test}.csv
    audiocaps           nothing: AudioCaps audio comes from YouTube and may not be bulk-copied;
                        prints how to obtain it and where the reader looks for it.

Each file goes to `DEST/.downloads/<name>.part` first. An interrupted transfer is resumed with an
HTTP Range request (the part is restarted if the server ignores the range), retried a few times,
then checked against a known MD5/SHA-256 (Clotho's come from its Zenodo record) or a `--sha256`
given by the user; without either, the computed SHA-256 is printed and recorded so a later run
can be pinned to it. Archives are extracted into `DEST/.downloads/<name>.extract/` and moved into
place, so an interrupted extraction never looks finished; a marker `DEST/.downloads/<name>.json`
(url, bytes, md5, sha256) is written last, and a rerun skips every file whose marker and target
exist. Archives are deleted after extraction unless `keep_archives`.

`.7z` extraction uses the `py7zr` package when installed, else a `7z`, `7za` or `7zr` program.

Another source: `--url` (per call), or the environment variable TEMINAL_DOWNLOAD_MIRROR=BASE,
which fetches every file from BASE/<file name> (ESC-50-master.zip, clotho_audio_evaluation.7z,
train.csv, ...): a mirror, a local copy served over HTTP, or the test suite's server.

This module is the generic fetch/verify/extract code only: which files a dataset has (URLs,
checksums, layout) is declared by its reader module's `SPEC` (`teminal.pipeline.sources`).
"""
from __future__ import annotations

import dataclasses
import hashlib
import http.client
import json
import os
import re
import shutil
import socket
import stat
import subprocess
import sys
import time
import urllib.error
import urllib.request
import zipfile
from pathlib import Path
from typing import Callable, Mapping

import click
from teminal.manifests.digests import hash_file
from teminal.pipeline.progress import progress_bar

from teminal.pipeline.sources import DATASETS
from teminal.pipeline.sources.spec import RemoteDataset, RemoteFile

MIRROR_ENV = "TEMINAL_DOWNLOAD_MIRROR"
USER_AGENT = "teminal-download/0.1 (+python-urllib)"
CHUNK = 1 << 20
CACHE_DIR = ".downloads"


class DownloadError(RuntimeError):
    """A transfer or extraction that failed; the message says what to do."""


class ChecksumError(DownloadError):
    pass


class NotDownloadable(ValueError):
    """A dataset whose files may not be fetched in bulk; the message explains how to get them."""


def remote_datasets() -> dict[str, RemoteDataset]:
    """`pipeline download` names -> files, as the dataset specs declare them."""
    return {spec.remote.name: spec.remote for spec in DATASETS.values() if spec.remote}


def manual_downloads() -> dict[str, Callable[[object], str]]:
    """Datasets that cannot be fetched in bulk -> how to obtain them (printed, not fetched)."""
    return {spec.name: spec.manual_download for spec in DATASETS.values() if spec.manual_download}


NAMES = (*remote_datasets(), *manual_downloads())


def dataset_of(name: str):
    """The registry entry (DatasetSpec) a `pipeline download` name belongs to: audiocaps-captions
    and audiocaps are both AudioCaps, whose reader reads the folder they fill."""
    for spec in DATASETS.values():
        if name == spec.name or (spec.remote and spec.remote.name == name):
            return spec
    raise ValueError(f"unknown dataset {name!r}; choose one of {', '.join(NAMES)}")


def default_dest(name: str) -> Path:
    """Where `pipeline download NAME` puts the files without DEST: the folder `pipeline build
    --dataset` reads without --root (one definition: the dataset's SPEC)."""
    return dataset_of(name).default_root()


# ---------------------------------------------------------------------------------------------
# Entry point

def download(name: str, dest=None, url: str | None = None,
             sha256: str | Mapping[str, str] | None = None, *, keep_archives: bool = False,
             retries: int = 5, timeout: float = 60.0, backoff: float = 2.0,
             progress: bool = True, echo: Callable[[str], None] | None = None) -> Path:
    """Fetch, verify and extract dataset `name` into `dest`; returns the folder to give its reader.

    dest: None is `default_dest(name)`, the folder `pipeline build --dataset` reads by default.
    url: replaces the source; for a one-file dataset (esc50) the file's URL, for the others a
      base URL to which each file name is appended. Without it, $TEMINAL_DOWNLOAD_MIRROR (a base
      URL, each file name appended) replaces the sources when set.
    sha256: expected SHA-256, as one hex string for a one-file dataset or {file name: hex}.
    Raises NotDownloadable for "audiocaps", DownloadError (ChecksumError) on failure."""
    echo = echo or _stderr
    dest = default_dest(name) if dest is None else dest
    manual = manual_downloads()
    if name in manual:
        raise NotDownloadable(manual[name](dest))
    remotes = remote_datasets()
    if name not in remotes:
        raise ValueError(f"unknown dataset {name!r}; choose one of {', '.join(NAMES)}")
    dataset = remotes[name]
    pinned = _pinned_checksums(dataset, sha256)
    dest = Path(dest).expanduser().absolute()
    cache = dest / CACHE_DIR
    cache.mkdir(parents=True, exist_ok=True)
    mirror = None if url else os.environ.get(MIRROR_ENV) or None
    for remote in dataset.files:
        remote = _with_overrides(remote, dataset, url, pinned, mirror)
        _fetch_one(remote, dest, cache, keep_archives=keep_archives, retries=retries,
                   timeout=timeout, backoff=backoff, progress=progress, echo=echo)
    return dest


def _with_overrides(remote: RemoteFile, dataset: RemoteDataset, url: str | None,
                    pinned: dict[str, str], mirror: str | None = None) -> RemoteFile:
    if url:
        single = len(dataset.files) == 1
        new_url = url if single else f"{url.rstrip('/')}/{remote.name}"
        remote = dataclasses.replace(remote, url=new_url)
    elif mirror:
        remote = dataclasses.replace(remote, url=f"{mirror.rstrip('/')}/{remote.name}")
    if remote.name in pinned:
        # the user's pin replaces the table's checksum (a mirror may serve another version)
        remote = dataclasses.replace(remote, sha256=pinned[remote.name].lower(), md5=None)
    return remote


def _pinned_checksums(dataset: RemoteDataset, sha256) -> dict[str, str]:
    if not sha256:
        return {}
    if isinstance(sha256, str):
        if len(dataset.files) != 1:
            raise ValueError(f"{dataset.name} has {len(dataset.files)} files; give --sha256 as "
                             f"FILE=HEX, with FILE one of {', '.join(f.name for f in dataset.files)}")
        sha256 = {dataset.files[0].name: sha256}
    names = {f.name for f in dataset.files}
    unknown = sorted(set(sha256) - names)
    if unknown:
        raise ValueError(f"--sha256 names {', '.join(unknown)}, not a file of {dataset.name} "
                         f"({', '.join(sorted(names))})")
    for file, hexdigest in sha256.items():
        if len(hexdigest) != 64 or any(c not in "0123456789abcdefABCDEF" for c in hexdigest):
            raise ValueError(f"--sha256 for {file}: {hexdigest!r} is not 64 hex digits")
    return dict(sha256)


def _fetch_one(remote: RemoteFile, dest: Path, cache: Path, *, keep_archives: bool,
               retries: int, timeout: float, backoff: float, progress: bool, echo) -> None:
    marker = cache / f"{remote.name}.json"
    target = dest / remote.target
    if _already_done(marker, target, remote):
        echo(f"{remote.name}: already downloaded and verified, skipping")
        return
    archive = cache / remote.name if remote.kind != "file" else target
    archive.parent.mkdir(parents=True, exist_ok=True)
    if not archive.is_file():
        fetch(remote.url, archive, retries=retries, timeout=timeout, backoff=backoff,
              progress=progress, echo=echo)
    digests = verify(archive, remote, progress=progress, echo=echo)
    if remote.kind != "file":
        extract(archive, remote.kind, target, scratch=cache / f"{remote.name}.extract")
        if not keep_archives:
            archive.unlink()
    marker.write_text(json.dumps({"url": remote.url, "target": remote.target, **digests},
                                 indent=1, sort_keys=True) + "\n")
    echo(f"{remote.name}: ok -> {target}")


def _already_done(marker: Path, target: Path, remote: RemoteFile) -> bool:
    if not marker.is_file() or not target.exists():
        return False
    try:
        record = json.loads(marker.read_text())
    except (OSError, ValueError):
        return False
    if remote.sha256 and record.get("sha256") != remote.sha256:
        return False  # the user pinned another file than the one recorded
    if remote.md5 and record.get("md5") != remote.md5:
        return False
    if remote.kind == "file" and target.stat().st_size != record.get("bytes"):
        return False  # the file was changed after it was verified
    return True


# ---------------------------------------------------------------------------------------------
# Transfer

def fetch(url: str, path: Path | str, *, retries: int = 5, timeout: float = 60.0,
          backoff: float = 2.0, progress: bool = True, echo: Callable[[str], None] | None = None) -> Path:
    """Download `url` to `path` through `path.part`, resuming the part with a Range request.

    Connection drops, short bodies and 5xx answers are retried `retries` times (waiting
    backoff * attempt seconds); 4xx answers fail at once."""
    echo = echo or _stderr
    path = Path(path)
    part = path.with_name(path.name + ".part")
    for attempt in range(retries + 1):
        try:
            _transfer(url, part, timeout=timeout, progress=progress, label=path.name)
            os.replace(part, path)
            return path
        except urllib.error.HTTPError as e:
            if e.code < 500 or attempt == retries:
                raise DownloadError(f"{url}: HTTP {e.code} {e.reason}"
                                    + (f" (after {attempt} retries)" if attempt else "")) from None
            problem = f"HTTP {e.code}"
        except (urllib.error.URLError, OSError, http.client.HTTPException, _ShortBody) as e:
            problem = _one_line(e)
            if attempt == retries:
                have = part.stat().st_size if part.exists() else 0
                raise DownloadError(
                    f"{url}: {problem}; {have} bytes kept in {part}, run the command again to "
                    f"resume") from None
        echo(f"{path.name}: {problem}; retrying ({attempt + 1}/{retries})")
        time.sleep(backoff * (attempt + 1))
    raise AssertionError("unreachable")


class _ShortBody(Exception):
    pass


def _transfer(url: str, part: Path, *, timeout: float, progress: bool, label: str) -> None:
    offset = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    request = urllib.request.Request(url, headers=headers)
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as e:
        if e.code == 416 and offset:
            total = _range_total(e.headers.get("Content-Range"))
            if total == offset:
                return  # the part already holds the whole file
            part.unlink()  # the part is longer than the file: start again
            raise _ShortBody(f"server refused to resume at byte {offset}; restarting") from None
        raise
    with response:
        if offset and response.status == 206:
            start = _range_start(response.headers.get("Content-Range"))
            if start != offset:
                raise DownloadError(f"{url}: asked to resume at byte {offset}, the server sent "
                                    f"a range starting at {start}")
            total = _range_total(response.headers.get("Content-Range"))
            mode = "ab"
        else:
            offset, mode = 0, "wb"  # a 200 answer to a Range request ignores it: start over
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
        written = offset
        with open(part, mode) as f, progress_bar(
                total, label, "B", enabled=progress, initial=offset, unit_scale=True,
                unit_divisor=1024, leave=False) as bar:
            while True:
                chunk = response.read(CHUNK)
                if not chunk:
                    break
                f.write(chunk)
                written += len(chunk)
                bar.update(len(chunk))
    if total is not None and written < total:
        # http.client returns an empty read, not an error, when the server closes early
        raise _ShortBody(f"connection closed after {written} of {total} bytes")


def _range_start(content_range: str | None) -> int | None:
    try:  # "bytes 100-199/200"
        return int(content_range.split()[1].split("-")[0])
    except (AttributeError, IndexError, ValueError):
        return None


def _range_total(content_range: str | None) -> int | None:
    try:  # "bytes 100-199/200" or "bytes */200"
        total = content_range.rsplit("/", 1)[1]
        return None if total == "*" else int(total)
    except (AttributeError, IndexError, ValueError):
        return None


# ---------------------------------------------------------------------------------------------
# Verification

def file_digests(path: Path, progress: bool = False) -> dict:
    md5, sha = hashlib.md5(), hashlib.sha256()
    size = path.stat().st_size
    with progress_bar(size, f"hash {path.name}", "B", enabled=progress and size >= (256 << 20),
                      unit_scale=True, leave=False) as bar:
        hash_file(path, md5, sha, on_chunk=bar.update, chunk=CHUNK)
    return {"bytes": size, "md5": md5.hexdigest(), "sha256": sha.hexdigest()}


def verify(path: Path, remote: RemoteFile, *, progress: bool = True,
           echo: Callable[[str], None] | None = None) -> dict:
    """Digests of `path`, checked against the remote's SHA-256 or MD5. A mismatch deletes the
    file (a rerun fetches it again) and raises ChecksumError."""
    echo = echo or _stderr
    digests = file_digests(path, progress=progress)
    expected = [("sha256", remote.sha256), ("md5", remote.md5)]
    for algo, want in expected:
        if want and digests[algo] != want.lower():
            path.unlink()
            raise ChecksumError(
                f"{remote.name}: {algo} {digests[algo]} does not match the expected {want} "
                f"({digests['bytes']} bytes from {remote.url}); the file was deleted. The server "
                f"may have sent another version or an error page: run again to fetch it anew, or "
                f"pin the right checksum with --sha256 {remote.name}=HEX.")
    if not any(want for _, want in expected):
        echo(f"{remote.name}: sha256 {digests['sha256']} (no published checksum; recorded in "
             f"{CACHE_DIR}/{remote.name}.json, pin it with --sha256 {remote.name}={digests['sha256']})")
    if remote.header is not None:
        _check_header(path, remote)
    return digests


def _check_header(path: Path, remote: RemoteFile) -> None:
    with open(path, "rb") as f:
        first = f.readline().decode("utf-8-sig", errors="replace").strip()
    if first != remote.header:
        path.unlink()
        raise DownloadError(f"{remote.name} from {remote.url} starts with {first[:80]!r}, not the "
                            f"expected CSV header {remote.header!r}; the file was deleted")


# ---------------------------------------------------------------------------------------------
# Extraction

def extract(archive: Path, kind: str, target: Path, scratch: Path) -> None:
    """Unpack `archive` into `target`. A single top-level folder in the archive (GitHub's
    `ESC-50-master/`, Clotho's `evaluation/`) is dropped so its contents land in `target`."""
    if scratch.exists():
        shutil.rmtree(scratch)  # left over from an interrupted run
    scratch.mkdir(parents=True)
    try:
        if kind == "zip":
            _extract_zip(archive, scratch)
        elif kind == "7z":
            _extract_7z(archive, scratch)
        else:
            raise ValueError(f"unknown archive kind {kind!r}")
        links = [p for p in scratch.rglob("*") if p.is_symlink()]   # (whatever the extractor)
        if links:
            raise DownloadError(f"{archive}: refusing {links[0].relative_to(scratch)}, a "
                                f"symbolic link; a dataset archive holds only files and folders")
        entries = list(scratch.iterdir())
        content = entries[0] if len(entries) == 1 and entries[0].is_dir() else scratch
        target.mkdir(parents=True, exist_ok=True)
        _merge_move(content, target)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _extract_zip(archive: Path, out: Path) -> None:
    try:
        with zipfile.ZipFile(archive) as z:
            for info in z.infolist():
                _check_member(info.filename, archive,
                              link=stat.S_ISLNK(info.external_attr >> 16))
            z.extractall(out)
    except zipfile.BadZipFile as e:
        raise DownloadError(f"{archive}: not a valid zip archive ({e}); delete it and run again") from None


def _extract_7z(archive: Path, out: Path) -> None:
    try:
        import py7zr
    except ImportError:
        py7zr = None
    if py7zr is not None:
        try:
            with py7zr.SevenZipFile(archive, mode="r") as z:
                for member in z.files:
                    _check_member(member.filename, archive, link=member.is_symlink)
                z.extractall(path=out)
        except py7zr.exceptions.Bad7zFile as e:
            raise DownloadError(f"{archive}: not a valid 7z archive ({e}); delete it and run again") from None
        return
    program = next((shutil.which(p) for p in ("7z", "7za", "7zr") if shutil.which(p)), None)
    if program is None:
        raise DownloadError(
            f"{archive} is a 7z archive and neither the py7zr package nor a 7z program is "
            f"installed: `pip install py7zr` (or `apt-get install p7zip-full`), then run again; "
            f"the downloaded archive is kept")
    listing = subprocess.run([program, "l", "-slt", str(archive)], capture_output=True, text=True)
    for member, link in _listed_7z_members(listing.stdout):
        _check_member(member, archive, link=link)
    done = subprocess.run([program, "x", "-y", f"-o{out}", str(archive)], capture_output=True, text=True)
    if done.returncode != 0:
        raise DownloadError(f"{program} could not extract {archive}: {done.stderr.strip()[-500:]}")


def _listed_7z_members(listing: str) -> list[tuple[str, bool]]:
    """(path, is a symlink) of each entry of `7z l -slt` (blocks of "Key = value" lines): a
    link shows as a "Symbolic Link" value or an l-mode in "Attributes" (e.g. "A lrwxrwxrwx")."""
    members = []
    for block in listing.split("\n\n"):
        fields = dict(line.split(" = ", 1) for line in block.splitlines() if " = " in line)
        if "Path" in fields and ("Attributes" in fields or "Size" in fields):
            link = bool(fields.get("Symbolic Link")) or bool(
                re.search(r"l[r-][w-][xsS-][r-][w-][xsS-][r-][w-][xtT-]", fields.get("Attributes", "")))
            members.append((fields["Path"], link))
    return members


def _check_member(member: str, archive: Path, link: bool = False) -> None:
    parts = Path(member.replace("\\", "/")).parts
    # a drive ("C:/x") is refused, a colon inside a name ("Kitchen: 12:30.wav") is not
    if member.startswith(("/", "\\")) or ".." in parts or re.match(r"[A-Za-z]:([\\/]|$)", member):
        raise DownloadError(f"{archive}: refusing to extract {member!r}, a path outside the folder")
    if link:   # a link could send the members after it (or any later reader) anywhere
        raise DownloadError(f"{archive}: refusing to extract {member!r}, a symbolic link; a "
                            f"dataset archive holds only files and folders")


def _merge_move(src: Path, dst: Path) -> None:
    """Move everything in `src` into `dst`, merging folders and replacing files."""
    for entry in src.iterdir():
        to = dst / entry.name
        if entry.is_dir() and to.is_dir():
            _merge_move(entry, to)
        elif entry.is_dir() and to.exists():
            raise DownloadError(f"cannot extract folder {to}: a file of that name is in the way")
        else:
            os.replace(entry, to)


# ---------------------------------------------------------------------------------------------
# CLI

def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _one_line(e: BaseException) -> str:
    if isinstance(e, socket.timeout):
        return "timed out"
    return " ".join(str(e).split()) or type(e).__name__


@click.command("download", context_settings={"help_option_names": ["-h", "--help"],
                                              "max_content_width": 100})
@click.argument("name", type=click.Choice(NAMES), metavar="NAME")
@click.argument("dest", required=False, type=click.Path(file_okay=False, path_type=Path))
@click.option("--url", default=None,
              help="Another source: the file's URL for esc50, a base URL (file names appended) "
                   "for clotho and audiocaps-captions. Default: $TEMINAL_DOWNLOAD_MIRROR/<file "
                   "name> when that is set, else the official sources.")
@click.option("--sha256", "sha256", multiple=True, metavar="[FILE=]HEX",
              help="Expected SHA-256; FILE=HEX for one file of a multi-file dataset. Repeatable.")
@click.option("--keep-archives", is_flag=True, help="Keep archives after extracting them.")
@click.option("--retries", default=5, show_default=True, help="Retries per file after a dropped connection.")
@click.option("--timeout", default=60.0, show_default=True, help="Seconds without data before a retry.")
def download_command(name: str, dest: Path | None, url: str | None, sha256: tuple[str, ...],
                     keep_archives: bool, retries: int, timeout: float) -> None:
    """Fetch dataset NAME into DEST, verified and laid out for `pipeline build`.

    NAME is esc50, clotho (v2.1), audiocaps-captions, or audiocaps (prints how to obtain its
    audio, which cannot be downloaded in bulk). DEST is the dataset root; without it, the folder
    `pipeline build --dataset NAME` reads by default ($TEMINAL_DATA/<dataset>, else
    data/ESC-50-master, data/clotho or data/audiocaps), so the build then needs no --root.
    Interrupted downloads resume on the next run; finished files are skipped.

    \b
    pipeline download esc50                    # into data/ESC-50-master
    pipeline build --dataset esc50 --out data/esc50-shards
    pipeline download clotho /big/disk/clotho  # elsewhere: give the build that --root
    pipeline build --dataset clotho --root /big/disk/clotho --out data/build-clotho
    pipeline download audiocaps                # how to get AudioCaps audio"""
    spec = dataset_of(name)
    dest = default_dest(name) if dest is None else dest
    manual = manual_downloads()
    if name in manual:
        click.echo(manual[name](dest))
        return
    try:
        root = download(name, dest, url=url, sha256=_parse_sha256(sha256), keep_archives=keep_archives,
                        retries=retries, timeout=timeout)
    except (DownloadError, ValueError) as e:
        raise click.ClickException(str(e)) from None
    click.echo(f"{name} is ready in {root} (the dataset root of `pipeline build`)")
    click.echo(f"next: {build_command(spec, dest)}")
    if spec.manual_download and name != spec.name:
        click.echo(f"{spec.name} audio is not included; see `pipeline download {spec.name}"
                   f"{_root_arg(spec, dest, ' ')}`.")


def build_command(spec, dest) -> str:
    """The `pipeline build` that reads what `pipeline download` put in `dest`."""
    return f"pipeline build --dataset {spec.name}{_root_arg(spec, dest, ' --root ')} --out OUT"


def _root_arg(spec, dest, flag: str) -> str:
    # the default folder needs no argument: the build reads it without --root
    same = Path(dest).expanduser().absolute() == spec.default_root().expanduser().absolute()
    return "" if same else f"{flag}{dest}"


def _parse_sha256(values: tuple[str, ...]) -> str | dict[str, str] | None:
    if not values:
        return None
    if len(values) == 1 and "=" not in values[0]:
        return values[0]
    out = {}
    for v in values:
        file, sep, hexdigest = v.partition("=")
        if not sep:
            raise click.BadParameter(f"{v!r}: give FILE=HEX when pinning several files", param_hint="--sha256")
        out[file.strip()] = hexdigest.strip()
    return out
