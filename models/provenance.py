"""What a checkpoint was trained on: `TrainingProvenance`, written by the trainer into a
checkpoint's config.json (under "extra") and read back by the evaluator, the same for every
family. It carries everything evaluation needs, so the evaluator never re-derives a stage's
data from its name, reads settings by key or re-reads a query file that may have changed:

    stage         pretrain | stage_a | stage_b
    init          the spec the run started from; a project checkpoint as an absolute path (the
                  evaluator follows the chain stage B <- stage A <- pretraining from any folder)
    steps, world_size
    data          the pipeline output folder (OUT) it streamed, absolute
    build_id      that catalog's build id(s)
    synthetic     whether that data was the synthetic stand-in
    relations     the relations of the groups it trained on (what put class pairs and caption
                  wordings in front of the model)
    selection     DataSelection: split, the --where predicate, the --query-file's TEXT (and
                  its absolute path), the caption templates
    selection_sha256  digest of the group keys it trained on (teminal.manifests.catalog.
                  selection_digest): the evaluator tells when the catalog's answer changed
    earlier_selections  the selections of the steps before a `--resume-changed`
    train_config, earlier_train_configs  the run's settings as given (for people; the fields
                  above are what programs read)

Checkpoints written before these fields, and hand-made configs, may use other keys
(`catalog_build_id`) or a flat config: `from_dict` derives the fields from what they have (a
stage name's relations, train_config's selection with its query file's name) and keeps unknown
keys in `other`.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from teminal.manifests.vocabulary import STAGE_RELATIONS

# The relations each trainer stage reads, for checkpoints written before `relations` was
# recorded (train/pretrain.py, stage_a.py, stage_b.py define them for new ones).
LEGACY_STAGE_RELATIONS = {"pretrain": ("single",), "stage_a": STAGE_RELATIONS["a"],
                          "stage_b": STAGE_RELATIONS["b"]}


@dataclass(frozen=True)
class DataSelection:
    """Which groups of a catalog a run trained on, as the trainer chose them, and which caption
    wordings it drew (`templates` prefixes; None: each member's canonical caption)."""
    split: str = "train"
    where: str | None = None
    query: str | None = None          # the query's text: a file may change or go after training
    query_file: str | None = None     # where it came from (absolute); alone: a legacy record
    templates: list | None = None

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d) -> "DataSelection":
        d = d if isinstance(d, dict) else {}
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in d.items() if k in known}
        if not values.get("split"):
            values["split"] = "train"
        return cls(**values)

    @classmethod
    def of_train_config(cls, cfg: dict | None, query: str | None = None) -> "DataSelection":
        """The selection a trainer's settings (a TrainConfig dict) describe; `query` is the text
        its query file held when the run read it."""
        cfg = cfg if isinstance(cfg, dict) else {}
        query_file = cfg.get("query_file")
        if query_file:
            query_file = str(Path(query_file).absolute())
        return cls(split=cfg.get("split") or "train", where=cfg.get("where"), query=query,
                   query_file=query_file, templates=cfg.get("templates"))


@dataclass(frozen=True)
class TrainingProvenance:
    stage: str | None = None
    init: str | None = None
    steps: int | None = None
    world_size: int | None = None
    data: str | None = None
    build_id: str | list | None = None
    synthetic: bool | None = None
    relations: tuple | None = None
    selection: DataSelection = field(default_factory=DataSelection)
    selection_sha256: str | None = None
    earlier_selections: tuple = ()
    train_config: dict = field(default_factory=dict)
    # settings of the steps before a `--resume-changed` (the evaluator unions their selections)
    earlier_train_configs: list = field(default_factory=list)
    other: dict = field(default_factory=dict)   # keys this class does not know, kept as given

    def to_dict(self) -> dict:
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        other = d.pop("other")
        d["relations"] = list(self.relations) if self.relations is not None else None
        d["selection"] = self.selection.to_dict()
        d["earlier_selections"] = [s.to_dict() for s in self.earlier_selections]
        return {**other, **d}

    @classmethod
    def from_dict(cls, d: dict | None) -> "TrainingProvenance":
        d = dict(d or {})
        known = {f.name for f in fields(cls)} - {"other"}
        values = {k: d.pop(k) for k in list(d) if k in known}
        if values.get("build_id") is None and d.get("catalog_build_id"):
            values["build_id"] = d["catalog_build_id"]
        if not isinstance(values.get("train_config"), dict):
            values["train_config"] = {}
        cfg = values["train_config"]
        relations = values.get("relations")
        if relations is None:   # written before relations were recorded: the stage's own
            relations = LEGACY_STAGE_RELATIONS.get(values.get("stage"))
        values["relations"] = tuple(relations) if relations is not None else None
        values["selection"] = (DataSelection.from_dict(values["selection"])
                               if isinstance(values.get("selection"), dict)
                               else DataSelection.of_train_config(cfg))
        if "earlier_selections" in values:
            values["earlier_selections"] = tuple(DataSelection.from_dict(s)
                                                 for s in values["earlier_selections"] or ())
        else:
            values["earlier_selections"] = tuple(
                DataSelection.of_train_config(h.get("train_config"))
                for h in values.get("earlier_train_configs") or () if isinstance(h, dict))
        return cls(**values, other=d)

    @classmethod
    def from_config(cls, config: dict | None) -> "TrainingProvenance":
        """From a checkpoint's config.json: its "extra", or the config itself when flat."""
        config = config if isinstance(config, dict) else {}
        extra = config.get("extra")
        return cls.from_dict(extra if isinstance(extra, dict) else config)

    @classmethod
    def of_model(cls, model) -> "TrainingProvenance":
        config = getattr(model, "config", None) or {}
        if not isinstance(config, dict):
            config = getattr(config, "__dict__", {}) or {}
        return cls.from_config(config)

    @classmethod
    def of_checkpoint(cls, spec, near: str | Path | None = None) -> "TrainingProvenance | None":
        """The provenance of the project checkpoint a spec names (e.g. a recorded `init`), or
        None when it names none (`small`, `laion:...`, a folder that is gone). `near`: the
        checkpoint that recorded `spec` (see `find_checkpoint`)."""
        folder = find_checkpoint(spec, near)
        return None if folder is None else cls.of_folder(folder)

    @classmethod
    def of_folder(cls, folder: Path) -> "TrainingProvenance | None":
        try:
            return cls.from_config(json.loads((folder / _config_file()).read_text(encoding="utf-8")))
        except (OSError, ValueError):
            return None

    def chain(self, near: str | Path | None = None, max_depth: int = 8) -> list["TrainingProvenance"]:
        """This provenance, then that of the checkpoint it was initialised from, and so on
        (stage B <- stage A <- pretraining). `near`: this checkpoint's folder."""
        out, prov = [], self
        while prov is not None and prov.recorded and len(out) < max_depth:
            out.append(prov)
            near = find_checkpoint(prov.init, near)
            prov = None if near is None else TrainingProvenance.of_folder(near)
        return out

    @property
    def recorded(self) -> bool:
        """Whether anything was recorded (a model that was never trained records nothing)."""
        return any(v not in (None, {}, []) for v in (self.stage, self.init, self.data,
                                                      self.build_id)) or bool(self.other)

    @property
    def build_ids(self) -> str | None:
        """The catalog build id(s) as one string ("a,b" for a merged catalog), or None."""
        bid = self.build_id
        if isinstance(bid, (list, tuple)):
            return ",".join(map(str, bid)) or None
        return str(bid) if bid else None

    @property
    def selections(self) -> tuple[DataSelection, ...]:
        """Every selection the weights were trained on: this one, then those before any
        `--resume-changed`."""
        return (self.selection,) + tuple(self.earlier_selections)


def find_checkpoint(spec, near: str | Path | None = None) -> Path | None:
    """The project checkpoint folder a recorded spec names, or None.

    Inits are recorded absolute; a relative one (a checkpoint written before) is relative to
    the folder its trainer ran in: the working directory is tried first, then each parent of
    `near` (the checkpoint that recorded it), where a run's folders usually sit."""
    if not isinstance(spec, str) or not spec:
        return None
    folder = _checkpoint_folder(spec)
    if (folder is None and near is not None and "/" in spec and ":" not in spec
            and not Path(spec).is_absolute()):
        folder = next((f for base in Path(near).absolute().parents
                       if (f := _checkpoint_folder(str(base / spec))) is not None), None)
    return folder


def absolute_spec(spec: str) -> str:
    """A model spec with a project checkpoint folder made absolute (others as given), so a
    recorded `init` names the same checkpoint from any working directory."""
    folder = _checkpoint_folder(spec)
    return str(folder.absolute()) if folder is not None else spec


def _checkpoint_folder(spec: str) -> Path | None:
    """The project checkpoint folder `spec` names; None for other specs and for a folder that
    is not there (a recorded path may be gone: the chain just ends)."""
    from teminal.models.registry import checkpoint_folder

    try:
        return checkpoint_folder(spec)
    except (OSError, ValueError):
        return None


def _config_file() -> str:
    from teminal.models.registry import CONFIG_FILE

    return CONFIG_FILE
