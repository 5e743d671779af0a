"""The words and places of the data contract, defined once for the pipeline that writes a build
and for the trainers and evaluators that read it.

- Relations: what a group holds per stage (stage "a": single, double; stage "b": forward,
  reversed, overlay), in the block order the losses expect.
- Texts: `label_text` (a class name as caption text) and the class prompt that pretraining,
  stage B's replayed singles and zero-shot evaluation share.
- Layout: where a build keeps its catalog and shards in OUT, and how a shard member is named
  (`<group_key>.<relation>.<ext>`, the group's rows in `<group_key>.json`).

Changing anything here changes what builds mean: every reader follows, no other file repeats it.
"""
from __future__ import annotations

import json
import os
import shlex
from pathlib import Path
from typing import NamedTuple

# -- relations ---------------------------------------------------------------------------------

STAGE_RELATIONS: dict[str, tuple[str, ...]] = {
    "a": ("single", "double"),
    "b": ("forward", "reversed", "overlay"),
}
RELATIONS: tuple[str, ...] = tuple(r for rs in STAGE_RELATIONS.values() for r in rs)
# relations whose two parts play one after the other (the others fill the clip from their start)
CONCATENATIONS = frozenset({"double", "forward", "reversed"})
# relations that put a class pair in front of a model (a single names one class)
PAIR_RELATIONS: tuple[str, ...] = tuple(r for r in RELATIONS if r != "single")


def stage_of(relations) -> str | None:
    """The stage whose groups hold every relation of `relations` (None: no single stage)."""
    return next((stage for stage, rs in STAGE_RELATIONS.items()
                 if relations and set(relations) <= set(rs)), None)


# -- texts -------------------------------------------------------------------------------------

# The zero-shot prompt: ZSTE and ESC-50 zero-shot ask for a class this way, and pretraining and
# stage B's replayed singles teach it this way.
CLASS_PROMPT = "This is a sound of {label}."


def label_text(label: str) -> str:
    """A class name as caption text: "chirping_birds" -> "chirping birds" (blanks collapsed)."""
    return " ".join(label.replace("_", " ").split())


# -- layout of a build folder (OUT) -------------------------------------------------------------

MANIFESTS_DIR = "manifests"
CATALOG_FILE = "catalog.duckdb"
SHARDS_DIR = "shards"
GROUP_META = "json"     # the member that holds a group's rows: <group_key>.json


# How OUT was made, for the commands that make it again: a build's record (its settings,
# sources and plan, teminal.pipeline.layout) or a merged catalog's (its inputs)
PARTS_DIR = f"{MANIFESTS_DIR}/parts"
BUILD_FILE = "build.json"      # OUT/manifests/parts/build.json
MERGE_FILE = "merge.json"      # OUT/manifests/merge.json


def manifests_dir(out: str | os.PathLike) -> Path:
    return Path(out) / MANIFESTS_DIR


def _merge_record(out: str | os.PathLike) -> dict | None:
    """OUT's merge.json with its inputs as strings; None when OUT holds no readable one."""
    try:
        merge = json.loads((manifests_dir(out) / MERGE_FILE).read_text(encoding="utf-8"))
        return {**merge, "inputs": [str(p) for p in merge["inputs"]]}
    except (OSError, ValueError, KeyError, TypeError):
        return None


def merged_inputs(out: str | os.PathLike) -> list[str] | None:
    """The input builds of the merged catalog in OUT; None when OUT holds no merge record."""
    merge = _merge_record(out)
    return merge["inputs"] if merge else None


def merge_command(out: str | os.PathLike) -> str | None:
    """The `pipeline catalog --merge` that made the merged catalog in OUT (its inputs and link
    mode), None when OUT holds no merge record."""
    merge = _merge_record(out)
    if merge is None:
        return None
    link = merge.get("link", "hard")
    link_args = [] if link == "hard" else ["--link", str(link)]
    return shlex.join(["pipeline", "catalog", "--merge", *merge["inputs"], "--out", str(out),
                       *link_args])


def remake_commands(out: str | os.PathLike) -> list[str]:
    """The commands that make OUT's shards and catalog again from its own record, each a line a
    shell runs as printed: `pipeline build --out OUT` for a build (it takes the settings it
    recorded, re-creates missing or damaged shards and rewrites the catalog); for a merged
    catalog, a build of each input, then the `pipeline catalog --merge` that made it. Empty
    when OUT holds neither record."""
    if (Path(out) / PARTS_DIR / BUILD_FILE).is_file():
        return [shlex.join(["pipeline", "build", "--out", str(out)])]
    merge = merge_command(out)
    if merge is None:
        return []
    return [shlex.join(["pipeline", "build", "--out", p]) for p in merged_inputs(out)] + [merge]


def catalog_command(out: str | os.PathLike) -> str | None:
    """The command that writes OUT's manifests and catalog again from what OUT holds (its
    shards are kept): `pipeline catalog OUT` for a build, the `pipeline catalog --merge` that
    made a merged catalog; None when OUT holds neither record."""
    if (Path(out) / PARTS_DIR / BUILD_FILE).is_file():
        return shlex.join(["pipeline", "catalog", str(out)])
    return merge_command(out)


def commands_text(commands: list[str]) -> str:
    """"`a`", "`a`, then `b`", "`a`, `b`, then `c`"."""
    quoted = [f"`{c}`" for c in commands]
    return quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + ", then " + quoted[-1]


def catalog_path(out: str | os.PathLike) -> Path:
    """OUT/manifests/catalog.duckdb."""
    return manifests_dir(out) / CATALOG_FILE


def shard_relpath(stage: str, split: str, index: int) -> str:
    """Path of a shard relative to the build's OUT folder: shards/<stage>/<split>-NNNNNN.tar."""
    return f"{SHARDS_DIR}/{stage}/{split}-{index:06d}.tar"


def sample_key(group_key: str, relation: str) -> str:
    """The `samples.key` of a member: <group_key>.<relation>."""
    return f"{group_key}.{relation}"


def member_name(group_key: str, relation: str, ext: str) -> str:
    """A member's name in its shard: <group_key>.<relation>.<ext>."""
    return f"{sample_key(group_key, relation)}.{ext}"


class MemberName(NamedTuple):
    """A shard member's name taken apart; `relation` and `ext` are empty for the group's JSON
    (`suffix` "json")."""
    group_key: str
    suffix: str        # everything after the group key: "json" or "<relation>.<ext>"
    relation: str
    ext: str

    @property
    def is_meta(self) -> bool:
        return self.suffix == GROUP_META

    @property
    def sample_key(self) -> str:
        return sample_key(self.group_key, self.relation)


def parse_member_name(name: str) -> MemberName:
    """`<group_key>.<relation>.<ext>` or `<group_key>.json` (any folder part is dropped; group keys
    have no dot, as webdataset splits a sample key at its first one)."""
    group_key, _, suffix = os.path.basename(name).partition(".")
    if suffix == GROUP_META:
        return MemberName(group_key, suffix, "", "")
    relation, _, ext = suffix.rpartition(".")
    return MemberName(group_key, suffix, relation, ext)
