"""The general simulator: every chain draws real and synthetic points and fits a model.

Works for every model and source. Chains are independent replicates advanced one
after another; each has its own real stream, models and synthetic pool.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from mad_core.factory import gaussian_reference, make_model, make_source
from mad_core.metrics.gaussian import gaussian_metrics
from mad_core.metrics.samples import sample_metrics
from mad_core.policy import Composition, LoopPolicy
from mad_core.seeding import Stream, generator
from mad_core.sources import RealStream
from mad_core.spec import TrialSpec, initial_real_size


@dataclass
class Chain:
    """One replicate: its real data stream, its last models (newest last), its pool."""

    stream: RealStream
    models: list = field(default_factory=list)
    pool: list[np.ndarray] = field(default_factory=list)


class SampleSimulator:
    """Runs generations by drawing points. ``step(t)`` returns per-chain metrics."""

    def __init__(self, spec: TrialSpec):
        self.spec = spec
        self.policy = LoopPolicy(spec)
        source = make_source(spec)
        n_initial = initial_real_size(spec.loop, spec.n_init, spec.n_real)
        self.chains = [Chain(RealStream(source, n_initial, spec.seed, (chain,)))
                       for chain in range(spec.chains)]
        self.reference = gaussian_reference(spec) if spec.model == "gaussian" else None
        if self.reference is None:
            # Held-out real samples the sample-based metrics compare against, fixed per trial.
            self.eval_reference = source.draw(spec.metrics["n_eval"],
                                              generator(spec.seed, Stream.EVAL, 0))

    def _training_set(self, chain: Chain, index: int, composition: Composition,
                      generation: int) -> tuple[np.ndarray, int, int]:
        """(samples, n_real, n_synthetic) for one chain."""
        parts = [chain.stream.initial[:composition.n_initial_real]]
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
        return np.concatenate(parts + list(new)), n_real, n_synthetic

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
            model = make_model(self.spec).fit(
                samples, generator(self.spec.seed, Stream.FIT, generation, index), previous)
            chain.models = (chain.models + [model])[-self.policy.models_kept:]
            per_chain.append(self._metrics(model, generation, index))
        metrics = {name: np.array([m[name] for m in per_chain]) for name in per_chain[0]}
        return metrics, {"n_real": n_real, "n_synthetic": n_synthetic}

    def _metrics(self, model, generation: int, index: int) -> dict[str, float]:
        if self.reference is not None:
            values = gaussian_metrics(model.mean_[None], model.cov_[None], self.reference)
            return {name: float(v[0]) for name, v in values.items()}
        rng = generator(self.spec.seed, Stream.EVAL, generation, index)
        samples = model.sample(len(self.eval_reference), self.spec.lam, rng)
        return sample_metrics(samples, self.eval_reference, self.spec.metrics["k"])

    def state_dict(self) -> dict:
        return {"chains": [{"stream": c.stream.state_dict(), "models": c.models,
                            "pool": c.pool} for c in self.chains]}

    def load_state_dict(self, state: dict) -> None:
        for chain, saved in zip(self.chains, state["chains"], strict=True):
            chain.stream.load_state_dict(saved["stream"])
            chain.models = list(saved["models"])
            chain.pool = list(saved["pool"])
