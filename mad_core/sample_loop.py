"""The general simulator: every chain draws real and synthetic samples and fits a model.

Works for every model and source. Chains are independent replicates advanced one
after another; each has its own real stream, models and synthetic pool.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field

import numpy as np

from mad_core.factory import make_evaluator, make_model, make_real_data
from mad_core.policy import Composition, LoopPolicy
from mad_core.samples import Samples
from mad_core.seeding import Stream, generator
from mad_core.snapshots import snapshot_state
from mad_core.sources import RealStream
from mad_core.spec import TrialSpec, initial_real_size

GRID_ROWS = 8  # samples per class (conditional) or rows of 8 (unconditional) in a grid
GRID_PIXELS = 640  # grids are upscaled (nearest neighbour) to about this many pixels wide


@dataclass
class Chain:
    """One replicate: its real data stream, its last models (newest last), its pool."""

    stream: RealStream
    models: list = field(default_factory=list)
    pool: list[Samples] = field(default_factory=list)


def artifact_due(generation: int, every: int | None, last: int) -> bool:
    """Whether a grid or snapshot is kept at `generation`: G1, every `every`-th, the last."""
    return every is not None and (generation == 1 or generation % every == 0 or generation == last)


class SampleSimulator:
    """Runs generations by drawing samples. ``step(t)`` returns per-chain metrics;
    ``artifacts(t)`` the sample grid and snapshots due after it.

    Args:
        spec: the trial.
        device: where neural models train and sample.
    """

    def __init__(self, spec: TrialSpec, device: str = "cpu"):
        self.spec, self.device = spec, device
        self.policy = LoopPolicy(spec)
        self.real = make_real_data(spec)
        n_initial = initial_real_size(spec.loop, spec.n_init, spec.n_real)
        self.chains = [Chain(RealStream(self.real.source, n_initial, spec.seed, (chain,)))
                       for chain in range(spec.chains)]
        self.evaluator = make_evaluator(spec, self.real, device)

    def _new_model(self):
        return make_model(self.spec, self.real, self.device)

    def _training_set(self, chain: Chain, index: int, composition: Composition,
                      generation: int) -> tuple[Samples, int, int]:
        """(training set, n_real, n_synthetic) for one chain."""
        parts = [chain.stream.initial.head(composition.n_initial_real)]
        if composition.n_fresh_real:
            parts.append(chain.stream.fresh(composition.n_fresh_real, generation))
        n_real = sum(len(p) for p in parts)
        rng = generator(self.spec.seed, Stream.SYNTHETIC, generation, index)
        new = [chain.models[-lag].sample(n, self.spec.lam, rng)
               for lag, n in composition.synthetic_draws]
        if composition.include_pool:
            chain.pool.extend(new)
            new = chain.pool
        n_synthetic = sum(len(s) for s in new)
        return Samples.concatenate(parts + list(new)), n_real, n_synthetic

    def step(self, generation: int) -> tuple[dict[str, np.ndarray], dict[str, int]]:
        """Train generation `generation` in every chain.

        Returns:
            ({metric: (C,)}, composition counts of one chain's training set).
        """
        composition = self.policy.composition(generation)
        per_chain: list[dict[str, float]] = []
        for index, chain in enumerate(self.chains):
            samples, n_real, n_synthetic = self._training_set(chain, index, composition,
                                                              generation)
            warm = composition.warm_start and chain.models[-1].supports_warm_start
            previous = chain.models[-1] if warm else None
            model = self._new_model().fit(
                samples, generator(self.spec.seed, Stream.FIT, generation, index), previous)
            chain.models = (chain.models + [model])[-self.policy.models_kept:]
            per_chain.append(self.evaluator(
                model, generator(self.spec.seed, Stream.EVAL, generation, index)))
        metrics = {name: np.array([m[name] for m in per_chain]) for name in per_chain[0]}
        return metrics, {"n_real": n_real, "n_synthetic": n_synthetic}

    def artifacts(self, generation: int) -> dict[str, bytes]:
        """{relative path: file content} due after `generation`: a PNG grid of chain 0's
        samples (the same noise and labels every generation, so grids compare) and a
        snapshot of each chain's model (``mad_core.snapshots``)."""
        spec, files = self.spec, {}
        if artifact_due(generation, spec.grid_every, spec.generations):
            files[f"grids/generation_{generation:04d}.png"] = self._grid(self.chains[0].models[-1])
        if artifact_due(generation, spec.snapshot_every, spec.generations):
            from mad_core.checkpoint import state_bytes

            for index, chain in enumerate(self.chains):
                suffix = f"_chain{index}" if len(self.chains) > 1 else ""
                state = snapshot_state(spec, chain.models[-1], generation, index,
                                       self.real.num_classes)
                files[f"snapshots/generation_{generation:04d}{suffix}.pt"] = state_bytes(state)
        return files

    def _grid(self, model) -> bytes:
        from mad_core.images.grid import save_sample_grid

        classes = self.real.num_classes
        labels = np.tile(np.arange(classes), GRID_ROWS) if classes else None
        count = len(labels) if classes else GRID_ROWS * 8
        rng = generator(self.spec.seed, Stream.GRID, 0)
        kwargs = {"labels": labels} if getattr(model, "conditional", False) else {}
        images = model.sample(count, self.spec.lam, rng, **kwargs).x
        buffer = io.BytesIO()
        width = images.shape[-1]
        save_sample_grid(images, buffer, columns=classes or 8,
                         scale=max(1, GRID_PIXELS // ((classes or 8) * (width + 2))))
        return buffer.getvalue()

    def state_dict(self) -> dict:
        """Per chain: the real stream's cursor, the kept models' states (optimizer states
        only where the loop warm-starts from them) and the accumulated pool."""
        def model_state(model) -> dict:
            state = model.state_dict()
            if not self.policy.warm_start:
                state.pop("optimizers", None)
            return state

        chains = []
        for chain in self.chains:
            pool = Samples.concatenate(chain.pool) if chain.pool else None
            chains.append({"stream": chain.stream.state_dict(),
                           "models": [model_state(m) for m in chain.models],
                           "pool": None if pool is None else {"x": pool.x, "y": pool.y}})
        return {"chains": chains}

    def load_state_dict(self, state: dict) -> None:
        for chain, saved in zip(self.chains, state["chains"], strict=True):
            chain.stream.load_state_dict(saved["stream"])
            chain.models = [self._new_model().load_state_dict(m) for m in saved["models"]]
            pool = saved["pool"]
            chain.pool = [] if pool is None else [Samples(pool["x"], pool["y"])]
