"""What a checkpoint was trained on: `TrainingProvenance`, written by the trainer into a
checkpoint's config.json (under "extra") and read back by the evaluator, the same for every
family.

    stage         pretrain | stage_a | stage_b
    init          the spec the run started from (a project checkpoint continues the chain)
    steps, world_size
    data          the pipeline output folder (OUT) it streamed
    build_id      that catalog's build id(s)
    synthetic     whether that data was the synthetic stand-in
    train_config  the run's resolved settings (split, where, query_file, templates, ...)

Checkpoints written before this class, and hand-made configs, may use other keys
(`catalog_build_id`) or a flat config: `from_dict` accepts them and keeps unknown keys in `other`.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields


@dataclass(frozen=True)
class TrainingProvenance:
    stage: str | None = None
    init: str | None = None
    steps: int | None = None
    world_size: int | None = None
    data: str | None = None
    build_id: str | list | None = None
    synthetic: bool | None = None
    train_config: dict = field(default_factory=dict)
    # settings of the steps before a `--resume-changed` (the evaluator unions their selections)
    earlier_train_configs: list = field(default_factory=list)
    other: dict = field(default_factory=dict)   # keys this class does not know, kept as given

    def to_dict(self) -> dict:
        d = asdict(self)
        other = d.pop("other")
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
    def of_checkpoint(cls, spec) -> "TrainingProvenance | None":
        """The provenance of the project checkpoint a spec names (e.g. a recorded `init`), or
        None when it names none (`small`, `laion:...`, a folder that is gone)."""
        from teminal.models.registry import CONFIG_FILE, checkpoint_folder

        if not isinstance(spec, str) or not spec:
            return None
        folder = checkpoint_folder(spec)
        if folder is None:
            return None
        try:
            return cls.from_config(json.loads((folder / CONFIG_FILE).read_text(encoding="utf-8")))
        except (OSError, ValueError):
            return None

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
