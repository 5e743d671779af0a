"""What a model was trained on: the class pairs it has heard and the caption wordings it has
read, from its checkpoint's provenance (teminal.models.provenance) and the catalogs it names.
ZSTE splits its pair groups into seen and unseen pairs, and its wordings into trained and
held-out ones, by this."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from teminal.manifests.catalog import Catalog, selection_digest
from teminal.manifests.vocabulary import PAIR_RELATIONS, RELATIONS, catalog_path, stage_of


@dataclass
class TrainingData:
    """Class pairs and caption templates the model was trained on."""
    path: str | None = None
    build_id: str | None = None
    pairs: set[frozenset[str]] = field(default_factory=set)
    template_ids: set[str] = field(default_factory=set)
    reason: str | None = None          # why it is unavailable (None when available)
    note: str | None = None
    chain: list[dict] = field(default_factory=list)   # the training runs it was gathered from

    @property
    def available(self) -> bool:
        return self.reason is None

    def to_dict(self) -> dict:
        d = {"available": self.available, "path": self.path, "build_id": self.build_id}
        if self.available:
            d.update(num_train_pairs=len(self.pairs), template_ids=sorted(self.template_ids))
        else:
            d["reason"] = self.reason
        if self.chain:
            d["chain"] = self.chain
        if self.note:
            d["note"] = self.note
        return d


def load_training_data(out, split: str = "train", relations=PAIR_RELATIONS,
                       where: str | None = None, query: str | None = None,
                       templates: list[str] | None = None, all_templates: bool = True,
                       caption_relations=RELATIONS) -> TrainingData:
    """Unordered class pairs of the composed `split` rows of `relations` in the catalog at OUT,
    optionally restricted as the trainer restricts groups (`where` predicate on samples rows,
    `query` returning group keys), and the template ids of the captions that rows of
    `caption_relations` offered: all of them (`all_templates`, the conservative default), those
    matching the trainer's `templates` prefixes, or only the canonical one (the trainer's
    default)."""
    out = Path(out)
    with Catalog.open(out) as catalog:
        info = catalog.info(split)
        keys = catalog.select_group_keys(split, where, query)
        rows = catalog.pair_rows(split)
    pairs, ids = set(), set()
    for r in rows:
        if keys is not None and r["group_key"] not in keys:
            continue
        labels = [x for x in (r["labels"] or []) if x]
        if r["relation"] in relations and len(set(labels)) == 2:
            pairs.add(frozenset(labels))
        offered = [t for t in (r["template_ids"] or []) if t] \
            if r["relation"] in caption_relations else []
        if templates:
            ids.update(t for t in offered if t.startswith(tuple(templates)))
        elif all_templates:
            ids.update(offered)
        elif offered:
            ids.add(offered[0])
    return TrainingData(str(out), info.build_id, pairs, ids)


def selected_digest(out, stage: str, split: str, where: str | None,
                    query: str | None) -> str:
    """The digest of the (stage, split) groups a trainer with these settings selects from the
    catalog at OUT now (`ShardIndex.digest` at training time, when no shard was skipped)."""
    with Catalog.open(out) as catalog:
        keys = catalog.group_keys(stage, split)
        chosen = catalog.select_group_keys(split, where, query, stage=stage)
    return selection_digest(keys if chosen is None else keys & chosen)


def checkpoint_provenance(model):
    """What the model's checkpoint recorded at save time (teminal.models.TrainingProvenance)."""
    from teminal.models.provenance import TrainingProvenance

    return TrainingProvenance.of_model(model)


def resolve_training_data(model, train_data=None, near=None) -> TrainingData:
    """Class pairs the model has heard and caption wordings it has read.

    With `train_data` (--train-data): every composed train group of that catalog, every template
    its captions offered. Otherwise from the checkpoint: for each run of its chain (stage B, the
    stage A it started from, ...; `near` is the checkpoint's folder, where a legacy relative
    init is looked for), the pairs of the relations that run trained on, restricted by its
    recorded selection (split, --where, the --query-file's text), and the captions its
    templates selected."""
    if train_data:
        return _from_catalog(model, Path(train_data))
    chain = checkpoint_provenance(model).chain(near)
    if not chain or not any(p.data for p in chain):
        return TrainingData(reason="the checkpoint records no training catalog (`data` in its "
                                   "extra); pass --train-data OUT_TRAIN",
                            build_id=chain[0].build_ids if chain else None)
    merged = TrainingData()
    notes, paths, builds = [], [], []
    for prov in chain:
        merged.chain.append({"stage": prov.stage, "data": prov.data, "build_id": prov.build_ids})
        if not prov.data:
            continue
        catalog = catalog_path(prov.data)
        if not catalog.is_file():
            return TrainingData(str(prov.data), prov.build_ids, chain=merged.chain,
                                reason=f"no catalog at {catalog} (recorded by the "
                                       f"{prov.stage or 'model'} checkpoint); pass --train-data "
                                       "pointing at the build the model was trained on")
        data = _add_run(merged, prov, notes)
        paths.append(str(prov.data))
        builds.append(data.build_id)
        if prov.build_ids and data.build_id and prov.build_ids != data.build_id:
            notes.append(f"{prov.stage}: checkpoint records build {prov.build_ids} but "
                         f"{prov.data} holds {data.build_id}")
    merged.path = ",".join(dict.fromkeys(paths))
    merged.build_id = ",".join(dict.fromkeys(b for b in builds if b)) or None
    merged.note = "; ".join(notes) or None
    return merged


def _from_catalog(model, path: Path) -> TrainingData:
    """--train-data: every train group of the catalog at `path`, every wording offered."""
    if not catalog_path(path).is_file():
        return TrainingData(str(path), reason=f"no catalog at {catalog_path(path)}")
    data = load_training_data(path)
    recorded = checkpoint_provenance(model).build_ids
    if recorded and data.build_id and recorded != data.build_id:
        data.note = (f"checkpoint records build {recorded} but --train-data holds "
                     f"{data.build_id}; seen/unseen refers to the latter")
    return data


def _add_run(merged: TrainingData, prov, notes: list[str]) -> TrainingData:
    """Add what one run of the chain trained on to `merged`: the pairs and wordings of its
    relations over each of its selections (a run resumed with --resume-changed trained on the
    earlier settings' selection too). A run that recorded no relations (a hand-made or foreign
    checkpoint) counts every relation and every wording, the conservative reading."""
    relations = prov.relations
    data = None
    for i, selection in enumerate(prov.selections):
        query = _query_text(selection, prov.stage, notes)
        data = load_training_data(prov.data, selection.split, relations or PAIR_RELATIONS,
                                  selection.where, query, selection.templates,
                                  all_templates=relations is None,
                                  caption_relations=relations or RELATIONS)
        merged.pairs |= data.pairs
        merged.template_ids |= data.template_ids
        stage = stage_of(relations)
        if i == 0 and prov.selection_sha256 and stage and selected_digest(
                prov.data, stage, selection.split, selection.where, query) != prov.selection_sha256:
            notes.append(f"{prov.stage}: the groups its selection picks in {prov.data} now differ "
                         f"from those it trained on (the catalog changed since, or shards were "
                         f"skipped)")
    return data


def _query_text(selection, stage: str | None, notes: list[str]) -> str | None:
    """The query a run selected its groups with: its recorded text; a checkpoint written before
    the text was recorded names only its file, read now if it is still there."""
    if selection.query is not None or not selection.query_file:
        return selection.query
    path = Path(selection.query_file)
    if path.is_file():
        return path.read_text(encoding="utf-8")
    notes.append(f"{stage}: query file {selection.query_file} is gone; all its groups counted")
    return None
