"""Import a package's sub-modules without running the package's own `__init__`.

laion-clap's and msclap's `__init__` files pull tokenizers or weights from a hub (or change
global warning and logging settings); the model code we need lives in sub-packages that need
no network. `register_bare_package` puts a package object with the real `__path__` in
`sys.modules`, so `importlib.import_module("pkg.sub")` loads the installed files while
`pkg/__init__.py` never runs.
"""
from __future__ import annotations

import importlib.machinery
import importlib.util
import sys
import types

STUB_MARK = "__teminal_stub__"


def register_bare_package(package: str, install_hint: str) -> None:
    if package in sys.modules:  # the real package (someone imported it) or our stub
        return
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(f"{package} is not installed: {install_hint}")
    module = types.ModuleType(package, f"{package} model code only; its __init__ is skipped by "
                                       "teminal.models (it reaches for a model hub)")
    module.__path__ = list(spec.submodule_search_locations)
    module.__spec__ = importlib.machinery.ModuleSpec(package, None, is_package=True)
    module.__spec__.submodule_search_locations = module.__path__
    module.__file__ = spec.origin
    setattr(module, STUB_MARK, True)
    sys.modules[package] = module
