"""Contrastive audio-language models behind one interface (see docs/ARCHITECTURE.md, "Models").

    from teminal.models import load_model
    model = load_model("small" | "laion:/path/630k-audioset-best.pt[?text=DIR]" | "hf:DIR"
                       | "msclap:/path/CLAP_weights_2022.pth?version=2022" | "ckpt_dir")

Families and the spec syntax: `teminal.models.registry`; the interface every family satisfies:
`teminal.models.interface.AudioTextModel`, the body they share: `teminal.models.adapter`; one
package per family: `teminal.models.laion` (small and laion), `.hf`, `.msclap`. Importing this
package is cheap and never touches the network; laion-clap, transformers and msclap code is
imported on first use.
"""
from teminal.models.errors import MissingFile, ModelFilesNotFound, ModelSpecError
from teminal.models.interface import AudioTextModel
from teminal.models.laion import ClapModel, bundled_configs
from teminal.models.provenance import TrainingProvenance
from teminal.models.registry import (FAMILIES, family_of, load_model, parse_spec, spec_label,
                                     weights_file)

__all__ = ["FAMILIES", "AudioTextModel", "ClapModel", "MissingFile", "ModelFilesNotFound",
           "ModelSpecError", "TrainingProvenance", "bundled_configs", "family_of", "load_model",
           "parse_spec", "spec_label", "weights_file"]
