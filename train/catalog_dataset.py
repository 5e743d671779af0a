"""The stage-A/B groups of a build as a torch IterableDataset, for training loops of your own.

    from torch.utils.data import DataLoader
    from teminal.train import catalog_groups

    groups = catalog_groups("data/esc50-shards", stage="b", groups_per_batch=8,
                            where="NOT list_contains(labels, 'dog')")
    for batch in DataLoader(groups, batch_size=None, num_workers=2):
        batch["audio"]         # float32 [3 x 8, T]: 8 forward members, then 8 reversed, 8 overlay
        batch["texts"]         # the 24 captions, in the same order
        batch["positive_ids"]  # int64 [24]: equal ids = identical captions (positives)
        batch["keys"]          # the 8 group keys; batch["sample_rate"], batch["epoch"]

It is the trainer's own stream (`teminal.train.streaming`: shards listed by the catalog and
checked, members checked against their sha256 as they decode, an order fixed by the seed), so a
loop that reads it sees exactly what `train/stage_a.py` / `stage_b.py` would. Give the DataLoader
`batch_size=None` (batches are made here, whole groups in the block layout the TeminAL losses
expect) and any `num_workers`: the plan adapts to the workers it runs in.
"""
from __future__ import annotations

from dataclasses import dataclass
from itertools import islice
from typing import Iterator

from torch.utils.data import IterableDataset, get_worker_info

from teminal.manifests.vocabulary import STAGE_RELATIONS
from teminal.train.streaming import (CaptionFn, GroupStream, ShardIndex, StreamPlan,
                                     canonical_caption, select_group_keys)


@dataclass
class CatalogGroups(IterableDataset):
    """Batches of `groups_per_batch` whole groups of one stage and split (see the module
    docstring); made by `catalog_groups`."""
    index: ShardIndex
    relations: tuple[str, ...]
    groups_per_batch: int = 1
    epochs: int | None = 1          # None: endless, as the trainer reads it
    seed: int = 0
    caption: CaptionFn = canonical_caption
    shuffle_buffer: int = 64
    rank: int = 0
    world: int = 1

    def __post_init__(self):
        super().__init__()

    @property
    def num_groups(self) -> int:
        return self.index.num_groups

    def __iter__(self) -> Iterator[dict]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info else (0, 0)
        # planned for the loader it runs in, so any num_workers splits the groups without overlap
        plan = StreamPlan(self.index, self.seed, self.rank, self.world, workers)
        stream = GroupStream(plan, self.relations, self.groups_per_batch, self.caption,
                             shuffle_buffer=self.shuffle_buffer)
        batches = iter(stream)
        if self.epochs is None:
            return batches
        groups = sum(plan.epoch_count(worker, epoch) for epoch in range(self.epochs))
        return islice(batches, groups // self.groups_per_batch)  # a short last batch is dropped


def catalog_groups(data_dir, stage: str = "b", split: str = "train", *, where: str | None = None,
                   query: str | None = None, groups_per_batch: int = 1, epochs: int | None = 1,
                   seed: int = 0, caption: CaptionFn = canonical_caption, shuffle_buffer: int = 64,
                   rank: int | None = None, world: int | None = None,
                   skip_missing_shards: bool = False) -> CatalogGroups:
    """The groups of `stage` ("a": single, double; "b": forward, reversed, overlay) and `split`
    of the build in `data_dir`, as a torch IterableDataset of batches.

    where / query: the trainer's --where (an SQL predicate on `samples`; a group is kept when
      every row matches) and --query-file (a query returning group_key), over the catalog.
    groups_per_batch: groups per batch; audio rows are relation-major (see the module docstring).
    epochs: passes over the selected groups (the last partial batch of each worker dropped);
      None streams endlessly. seed: shard and group order, reseeded per epoch.
    caption: the text of a member, (rows, relation, rng) -> str (teminal.train.streaming has
      canonical_caption, class_prompt_mix, TemplateCaption).
    rank / world: this process's share under DDP; default: torch.distributed's, else 0 / 1."""
    if stage not in STAGE_RELATIONS:
        raise ValueError(f"stage {stage!r}: choose 'a' (single, double) or 'b' (forward, "
                         f"reversed, overlay)")
    if not isinstance(groups_per_batch, int) or groups_per_batch < 1:
        raise ValueError(f"groups_per_batch {groups_per_batch!r}: give a whole number >= 1")
    if epochs is not None and (not isinstance(epochs, int) or epochs < 1):
        raise ValueError(f"epochs {epochs!r}: give a whole number >= 1, or None for an endless stream")
    rank, world = _rank_and_world(rank, world)
    keep = select_group_keys(data_dir, stage, split, where, query)
    index = ShardIndex.build(data_dir, stage, split, keep, skip_missing=skip_missing_shards)
    return CatalogGroups(index, STAGE_RELATIONS[stage], groups_per_batch, epochs, seed, caption,
                         shuffle_buffer, rank, world)


def _rank_and_world(rank: int | None, world: int | None) -> tuple[int, int]:
    import torch.distributed as dist

    running = dist.is_available() and dist.is_initialized()
    rank = rank if rank is not None else (dist.get_rank() if running else 0)
    world = world if world is not None else (dist.get_world_size() if running else 1)
    if not 0 <= rank < world:
        raise ValueError(f"rank {rank} of world {world}: need 0 <= rank < world")
    return rank, world
