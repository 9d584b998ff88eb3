"""Connecting to Ray and fitting a sweep's per-trial resources to the cluster.

Without an address the sweep starts its own Ray; ``mad sweep`` binds it to 127.0.0.1
(see sweeps.environment, which must act before ray is imported).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import ray

from mad_core.spec import trial_memories
from sweeps.grid import GridPoint
from sweeps.sweep_file import Resources


class ClusterResourceError(RuntimeError):
    """No node of the cluster can hold one trial: it would stay PENDING forever."""


def connect(address: str | None) -> bool:
    """Connect to the Ray cluster at `address` ("auto" on one of its nodes, or the head's
    "HOST:PORT"), or start a local Ray when it is None. A Ray this process has already
    joined is used as it is.

    Returns:
        True when this call started or joined Ray (the caller shuts it down).
    """
    if ray.is_initialized():
        return False
    if address is None:
        # logging_level: without it Ray logs "Started a local Ray instance." to the
        # terminal of every sweep.
        ray.init(address="local", include_dashboard=False, log_to_driver=False,
                 logging_level=logging.WARNING)
    else:
        ray.init(address=address, log_to_driver=False)
    return True


def session_folder() -> Path:
    """The folder of the running Ray session on this node (its logs and sockets):
    $RAY_TMPDIR/ray/session_<time>, /tmp/ray/... by default."""
    # No public accessor in Ray 2.60; the node object is the pinned version's own.
    return Path(ray._private.worker.global_worker.node.get_session_dir_path())


@dataclass(frozen=True)
class TrialResources:
    """What each trial asks Ray for, and why it differs from the sweep file (if it does)."""

    cpu: float
    gpu: float
    note: str = ""

    def as_tune(self) -> dict[str, float]:
        return {"cpu": self.cpu, "gpu": self.gpu}


def alive_nodes() -> int:
    return sum(1 for node in ray.nodes() if node["Alive"])


def _node_summary(resources: dict) -> str:
    return f"{resources.get('CPU', 0):g} CPU, {resources.get('GPU', 0):g} GPU"


def plan_resources(requested: Resources, points: Sequence[GridPoint] = ()) -> TrialResources:
    """The resources each trial asks for on the connected cluster.

    A GPU fraction is kept only when some node has GPUs; otherwise trials run on CPU
    (Ray would keep a GPU request PENDING forever). Raises ClusterResourceError when no
    alive node can hold one trial: its CPU and GPU, and the dominant arrays of the most
    demanding of `points` within the memory Ray gives tasks on that node.
    """
    nodes = [node["Resources"] for node in ray.nodes() if node["Alive"]]
    has_gpus = any(node.get("GPU", 0) > 0 for node in nodes)
    gpu = requested.gpu if has_gpus else 0.0
    note = ("" if gpu == requested.gpu else
            f"resources.gpu = {requested.gpu:g} ignored: the cluster has no GPUs, trials run on CPU")
    fitting = [node for node in nodes
               if node.get("CPU", 0) >= requested.cpu and node.get("GPU", 0) >= gpu]
    if not fitting:
        sizes = "; ".join(sorted({_node_summary(node) for node in nodes})) or "no alive node"
        raise ClusterResourceError(
            f"no node can hold a trial asking for {requested.cpu:g} CPU and {gpu:g} GPU "
            f"(nodes: {sizes}). Lower resources in the sweep file, or add a node type "
            f"that fits (on an autoscaling cluster keep min_workers >= 1 for it)")
    _check_memory(points, max(node.get("memory", 0) for node in fitting))
    return TrialResources(requested.cpu, gpu, note)


def _check_memory(points: Sequence[GridPoint], node_memory: float) -> None:
    """Raise ClusterResourceError when the most demanding trial's arrays exceed
    `node_memory` bytes, the largest memory for tasks of a node that holds a trial."""
    needs = [(need, point) for need, point in
             zip(trial_memories(point.spec for point in points), points) if need]
    if not needs:
        return
    need, point = max(needs, key=lambda pair: pair[0].bytes)
    problem = need.problem(int(node_memory), "the memory Ray gives tasks on the largest node "
                                             "that holds a trial")
    if problem is not None:
        raise ClusterResourceError(
            f"trial {point.index} ({point.label()}), {problem}, or add a node type with "
            f"more memory")
