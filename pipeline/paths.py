"""Paths read from files stay inside the folder they belong to.

A manifest, catalog, recipe or marker file names other files by path (a shard in
`shards.path`, a file `pipeline synth` wrote, a member of a downloaded archive). Such a file may
come from someone else, so every path read from one goes through `inside`: it must be relative,
without `..`, and still inside its folder once symlinks are resolved; a path that is written
must not pass through a symlink at all (a link inside OUT could point a write anywhere). Names
that become one path component (a split, a stage) go through `safe_name`. A violation is an
`UnsafePath` (a ValueError, so the CLI prints it as one line) naming the file it came from and
the offending value.
"""
from __future__ import annotations

import errno
import os
import re
from pathlib import Path, PurePosixPath


class UnsafePath(ValueError):
    """A path or name read from a file that would reach outside its folder."""


# letters, digits, "_" and "-": no separators, no dots (so no "..")
_SAFE_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")


def safe_name(value, source: str, what: str = "name") -> str:
    """`value` when it can be one path component (a split or stage name), else UnsafePath."""
    if isinstance(value, str) and _SAFE_NAME.fullmatch(value):
        return value
    raise UnsafePath(f"{source}: {what} {value!r} is not a plain name (letters, digits, _ and -, "
                     f"at most 64); refusing to use it in a path")


def relative_parts(relpath, source: str, what: str = "path") -> PurePosixPath:
    """`relpath` as a relative POSIX path with no `..`, `.`-only or empty parts, else
    UnsafePath. Only the text is checked; `inside` also checks the file system."""
    text = relpath if isinstance(relpath, str) else None
    problem = None
    if not text:
        problem = "is empty" if text == "" else "is not a path"
    elif "\0" in text:
        problem = "holds a NUL character"
    elif text.startswith(("/", "\\")) or re.match(r"[A-Za-z]:[\\/]", text):
        problem = "is absolute"
    elif ".." in PurePosixPath(text.replace("\\", "/")).parts:
        problem = "climbs out with '..'"
    elif not PurePosixPath(text).parts:
        problem = "names the folder itself, not a file in it"
    if problem:
        raise UnsafePath(f"{source}: {what} {relpath!r} {problem}; only paths inside the folder "
                         f"are accepted")
    return PurePosixPath(text)


def inside(folder, relpath, source: str, *, write: bool = False, what: str = "path") -> Path:
    """`folder / relpath` after checking that it stays inside `folder`.

    `relpath` is the value read from `source` (the file named in the message). Refused: what
    `relative_parts` refuses; a path whose real location (symlinks resolved) is outside the
    real `folder`; with `write=True`, any symlink between `folder` and the path, the path itself
    included, since writing through one would change the file it points to."""
    rel = relative_parts(relpath, source, what)
    folder = Path(folder)
    path = folder / rel
    if write:
        step = folder
        for part in rel.parts:
            step = step / part
            if step.is_symlink():
                raise UnsafePath(f"{source}: {what} {relpath!r} goes through the symbolic link "
                                 f"{step}; nothing is written through a link: remove it")
        return path
    real_folder = folder.resolve()
    real = path.resolve()
    if real != real_folder and real_folder not in real.parents:
        raise UnsafePath(f"{source}: {what} {relpath!r} leads to {real}, outside {folder} "
                         f"(through a symbolic link); refusing to read it")
    return path


def open_nofollow(path, flags: int, mode: int = 0o644) -> int:
    """`os.open(path, flags | O_NOFOLLOW)`: a symlink at `path` is refused (UnsafePath naming
    it), never followed, so a lock or marker file cannot redirect a write to another file."""
    try:
        return os.open(path, flags | os.O_NOFOLLOW, mode)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise UnsafePath(f"{path} is a symbolic link (to {os.readlink(path)}); it is never "
                             f"followed for writing: remove it and run again") from None
        raise


def write_text_nofollow(path, text: str) -> None:
    """Write `text` to `path` (created or truncated) unless `path` is a symlink (UnsafePath)."""
    with os.fdopen(open_nofollow(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC), "w",
                   encoding="utf-8") as f:
        f.write(text)


def no_symlinks_at(folder, names, source: str) -> None:
    """Refuse (UnsafePath) when any of `names` in `folder` is a symlink: folders a command
    replaces or writes into must be real folders of `folder`."""
    for name in names:
        path = Path(folder) / name
        if path.is_symlink():
            raise UnsafePath(f"{source}: {path} is a symbolic link (to {os.readlink(path)}); "
                             f"nothing is written through a link: remove it and run again")
