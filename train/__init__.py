"""Training: `accelerate launch`-able trainers (pretrain.py, stage_a.py, stage_b.py) and their
parts. For a training loop of your own, `catalog_groups` (teminal.train.catalog_dataset) gives
a build's stage-A/B groups as a torch IterableDataset."""


def __getattr__(name: str):
    # lazy: importing the package (as accelerate-launched scripts do) must not pull in torch
    if name in ("catalog_groups", "CatalogGroups"):
        from teminal.train import catalog_dataset

        return getattr(catalog_dataset, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
