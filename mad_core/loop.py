"""The self-consuming loop: one trial, one record per generation, resumable.

    loop = SelfConsumingLoop(resolve_spec(raw), device="cpu")
    for record in loop:              # generation 1 .. spec.generations
        files = loop.artifacts       # {path: bytes}: sample grid, model snapshots due
        state = loop.state_dict()    # resume point after this generation (arrays, tensors)

``SelfConsumingLoop(spec, state=state)`` continues after the saved generation and
yields records identical to an uninterrupted run (bar ``seconds``): every random
draw comes from a generator derived from (seed, generation), never from a
generator's history.
"""

from __future__ import annotations

import time
from typing import Iterator

from mad_core.metrics.summary import summarise
from mad_core.spec import TrialSpec

TIMING_KEYS = ("seconds",)  # the only record fields that differ between identical runs


class StateMismatchError(ValueError):
    """A saved state belongs to a different spec."""


class SelfConsumingLoop:
    """Runs the generations of one trial spec.

    Args:
        spec: a resolved ``TrialSpec``.
        state: a ``state_dict()`` saved by a loop of the same spec, to resume from.
        device: where neural models train and sample ("cpu", "cuda", "cuda:1"); a
            runtime choice, never part of the spec.
    """

    def __init__(self, spec: TrialSpec, state: dict | None = None, device: str = "cpu"):
        self.spec = spec
        # Imported on demand: the sample-based path pulls in torch and POT (~2 s), which
        # every trial process of a sweep of exact Gaussian trials would pay for nothing.
        if spec.simulation == "exact":
            from mad_core.exact_gaussian import ExactGaussianSimulator as Simulator
        else:
            from mad_core.sample_loop import SampleSimulator as Simulator
        self.simulator = Simulator(spec, device)
        self.generation = 0  # generations completed
        # {relative path: bytes} of the latest generation: its sample grid and snapshots.
        self.artifacts: dict[str, bytes] = {}
        # {metric: (C,)} of the latest generation: the distribution over chains that
        # the record summarises.
        self.per_chain: dict = {}
        if state is not None:
            if state["spec_hash"] != spec.spec_hash():
                raise StateMismatchError(
                    f"saved state is for spec {state['spec_hash']}, not {spec.spec_hash()}; "
                    f"resume with the spec the state was saved with")
            self.simulator.load_state_dict(state["simulator"])
            self.generation = state["generation"]

    @property
    def done(self) -> bool:
        return self.generation >= self.spec.generations

    def step(self) -> dict[str, float | int]:
        """Run the next generation and return its record."""
        generation = self.generation + 1
        started = time.perf_counter()
        per_chain, counts = self.simulator.step(generation)
        self.generation, self.per_chain = generation, per_chain
        self.artifacts = self.simulator.artifacts(generation)
        return {
            "generation": generation,
            "n_real": counts["n_real"],
            "n_synthetic": counts["n_synthetic"],
            "n_train": counts["n_real"] + counts["n_synthetic"],
            "chains": self.spec.chains,
            **summarise(per_chain),
            "seconds": time.perf_counter() - started,
        }

    def __iter__(self) -> Iterator[dict[str, float | int]]:
        while not self.done:
            yield self.step()

    def state_dict(self) -> dict:
        """Everything needed to continue after the current generation: a dict of numbers,
        strings, arrays and tensors that ``mad_core.checkpoint.save_state`` writes."""
        return {"spec_hash": self.spec.spec_hash(), "generation": self.generation,
                "simulator": self.simulator.state_dict()}
