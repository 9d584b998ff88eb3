"""The torchvision workaround: torchvision imports and works, and real ops are never redefined."""

import subprocess
import sys
import textwrap

import torch

from mad_core.images.torchvision_compat import ensure_torchvision_ops, import_cleanfid, import_torchvision


def _run_fresh(code: str) -> str:
    """stdout of ``code`` run in a fresh interpreter (the workaround acts before the first import)."""
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_torchvision_and_cleanfid_import_and_work():
    torchvision = import_torchvision()
    grid = torchvision.utils.make_grid(torch.zeros(4, 1, 8, 8), nrow=2, padding=1)
    assert grid.shape == (3, 19, 19)
    assert callable(torchvision.datasets.MNIST)
    assert callable(import_cleanfid().frechet_distance)
    assert ensure_torchvision_ops() is False  # idempotent: nothing left to do once imported


def test_nothing_defined_when_the_op_schemas_already_exist():
    # Stands in for torchvision's compiled ops having loaded: redefining a schema they
    # register would raise, so the workaround must leave them alone.
    output = _run_fresh("""
        import torch
        library = torch.library.Library("torchvision", "FRAGMENT")
        library.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        library.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        from mad_core.images.torchvision_compat import ensure_torchvision_ops, import_torchvision
        print(ensure_torchvision_ops(), import_torchvision().utils.make_grid(torch.zeros(1, 1, 2, 2)).shape[0])
    """)
    assert output.split() == ["False", "3"]


def test_fresh_interpreter_imports_torchvision_through_the_workaround():
    output = _run_fresh("""
        import torch
        from mad_core.images.torchvision_compat import import_torchvision
        torchvision = import_torchvision()
        print(hasattr(torch.ops.torchvision, "nms"), torchvision.utils.make_grid(torch.ones(2, 3, 4, 4)).shape[0])
    """)
    assert output.split() == ["True", "3"]
