"""Family "msclap": Microsoft CLAP (2022: CNN14 + BERT; 2023: HTSAT + GPT-2) behind the adapter
interface, fully offline.

    adapter.py     MsClapModel (towers, head tokens from CNN14/HTSAT frames, save)
    library.py     the one place that imports msclap (its model modules, never its __init__)
    checkpoint.py  msclap weights files: read, fix keys, sizes from the tensors
    tokenizer.py   CLAPWrapper's text preprocessing on local tokenizer files
    loading.py     load / load_checkpoint
    export.py      a post-trained model as the .pth msclap's own modules load
"""
from teminal.models.msclap.adapter import MsClapModel
from teminal.models.msclap.loading import load, load_checkpoint

__all__ = ["MsClapModel", "load", "load_checkpoint"]
