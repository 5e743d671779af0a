"""CLAP models behind one adapter (see docs/ARCHITECTURE.md, "Models").

    from teminal.models import load_model
    model = load_model("small" | "laion:/path/630k-audioset-best.pt[?text=DIR]" | "ckpt_dir")

Importing this package is cheap and never touches the network; laion-clap's model code is
imported on first use, through `teminal.models.laion_import` only.
"""
from teminal.models.clap import ClapModel
from teminal.models.errors import MissingFile, ModelFilesNotFound, ModelSpecError
from teminal.models.specs import bundled_configs, load_model

__all__ = ["ClapModel", "MissingFile", "ModelFilesNotFound", "ModelSpecError",
           "bundled_configs", "load_model"]
