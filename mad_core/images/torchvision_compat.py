"""Import torchvision (and clean-fid, which imports it) on a CPU-only torch.

The registry's torchvision 0.28.0 wheel is a CUDA build: its compiled ops link
``libtorch_cuda.so``, which the CPU torch lacks, so they do not load and
``import torchvision`` then fails in its meta registrations with
``operator torchvision::nms does not exist``. Defining the two op schemas those
registrations look up (``nms`` and ``qnms``) before the first import is enough for
everything this project uses (datasets.MNIST, utils.make_grid, clean-fid).
``ops.nms`` and ``io.decode_png`` stay unusable: read and write images with PIL.

Where the compiled ops do load (a CUDA torch matching the wheel) nothing is defined:
defining a schema the real library also registers would make that library fail.
Every module of mad_core that needs torchvision or clean-fid gets it from here.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import torch

# The schemas torchvision's compiled library defines for the two ops its Python side looks up.
_OP_SCHEMAS = (
    "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
)
_schema_library: torch.library.Library | None = None  # kept alive: dropping it unregisters


def _load_compiled_ops() -> bool:
    """Load torchvision's compiled ``_C`` extension the way torchvision does; True if it loads."""
    spec = importlib.util.find_spec("torchvision")
    if spec is None or not spec.submodule_search_locations:
        return False
    package_dir = Path(next(iter(spec.submodule_search_locations)))
    loader_details = (importlib.machinery.ExtensionFileLoader, importlib.machinery.EXTENSION_SUFFIXES)
    extension = importlib.machinery.FileFinder(str(package_dir), loader_details).find_spec("_C")
    if extension is None:
        return False
    try:
        torch.ops.load_library(extension.origin)
    except OSError:  # e.g. "libtorch_cuda.so: cannot open shared object file"
        return False
    return True


def ensure_torchvision_ops() -> bool:
    """Make ``import torchvision`` work; returns True when the schemas had to be defined.

    Idempotent. Does nothing once torchvision is imported or when its compiled ops
    (or earlier definitions of the schemas) are present.
    """
    global _schema_library
    if "torchvision" in sys.modules or _load_compiled_ops() or hasattr(torch.ops.torchvision, "nms"):
        return False
    _schema_library = torch.library.Library("torchvision", "FRAGMENT")
    for schema in _OP_SCHEMAS:
        _schema_library.define(schema)
    return True


def import_torchvision() -> ModuleType:
    """The ``torchvision`` module, imported after ``ensure_torchvision_ops``."""
    ensure_torchvision_ops()
    return importlib.import_module("torchvision")


def import_cleanfid(submodule: str = "fid") -> ModuleType:
    """A clean-fid module, ``cleanfid.fid`` by default (clean-fid imports torchvision)."""
    ensure_torchvision_ops()
    return importlib.import_module(f"cleanfid.{submodule}")
