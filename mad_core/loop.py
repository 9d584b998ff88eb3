"""The self-consuming loop: one trial, one record per generation, resumable.

    loop = SelfConsumingLoop(resolve_spec(raw), device="cpu")
    for record in loop:              # generation 1 .. spec.generations, or until it stops
        files = loop.artifacts       # {path: bytes}: sample grid, model snapshots due
        state = loop.state_dict()    # resume point after this generation (arrays, tensors)
    print(loop.stop_status)          # with a stop rule: whether and where it converged

``SelfConsumingLoop(spec, state=state)`` continues after the saved generation and
yields records identical to an uninterrupted run (bar ``seconds``): every random
draw comes from a generator derived from (seed, generation), never from a
generator's history. With a stop rule (the spec's ``stop``,
``mad_core.convergence.StopRule``) the loop ends at the first check where its own
series of the rule's metric has a limit known to ``rel_precision``; the state holds that
series, so a resumed loop stops at the same generation.
"""

from __future__ import annotations

import time
from typing import Iterator

import numpy as np

from mad_core.convergence import Asymptote, StopRule
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
        self.rule = StopRule(**spec.stop) if spec.stop is not None else None
        # The rule's metric at generations 1..spec.generations (filled as they run).
        self._series = np.full(spec.generations if self.rule else 0, np.nan)
        # The latest check: its generation, its estimate, and whether the rule was met
        # (then the loop is done).
        self.checked_at = 0
        self.estimate: Asymptote | None = None
        self.converged = False
        if state is not None:
            if state["spec_hash"] != spec.spec_hash():
                raise StateMismatchError(
                    f"saved state is for spec {state['spec_hash']}, not {spec.spec_hash()}; "
                    f"resume with the spec the state was saved with")
            self.simulator.load_state_dict(state["simulator"])
            self.generation = state["generation"]
            if self.rule is not None:
                self._series[:self.generation] = state["stop_history"]
                # A state saved just after a check: redo it (it is deterministic), so that
                # `done` and `stop_status` are what they were when the state was saved.
                if self._check_due():
                    self._check()

    @property
    def done(self) -> bool:
        return self.generation >= self.spec.generations or self.converged

    @property
    def history(self) -> np.ndarray:
        """(generation,) the stop rule's metric at the generations run so far."""
        return self._series[:self.generation]

    @property
    def stopped_early(self) -> bool:
        """Whether the stop rule ended the trial before ``spec.generations``."""
        return self.converged and self.generation < self.spec.generations

    @property
    def stop_status(self) -> str:
        """One line on the stop rule: "" without one; else whether and where it was met,
        with the limit and its relative half-width, or why not yet."""
        if self.rule is None:
            return ""
        metric = self.rule.metric
        if self.estimate is None:
            return f"{metric}: no check yet (the first at G{self.rule.min_generations})"
        estimate = self.estimate
        if estimate.converged:
            limit = (f"{metric} = {estimate.value:.6g} +- "
                     f"{100 * estimate.relative_half_width:.2g} % (95 %; burn-in "
                     f"{estimate.burn_in}, autocorrelation time "
                     f"{estimate.autocorrelation_time:.3g} generations)")
            if self.converged:
                return f"converged at G{self.checked_at}: {limit}"
            return (f"not converged at G{self.checked_at}: {limit}, wider than the "
                    f"+-{100 * self.rule.rel_precision:g} % asked")
        return f"not converged at G{self.checked_at}: {metric}: {estimate.reason}"

    def _check_due(self) -> bool:
        """A scheduled check, or the last generation (whose estimate ``stop_status``
        reports for a trial that did not converge)."""
        return (self.generation == self.rule.next_check(self.generation)
                or self.generation == self.spec.generations)

    def _check(self) -> None:
        self.converged, self.estimate = self.rule.check(self.history)
        self.checked_at = self.generation

    def step(self) -> dict[str, float | int]:
        """Run the next generation and return its record."""
        generation = self.generation + 1
        started = time.perf_counter()
        per_chain, counts = self.simulator.step(generation)
        self.generation, self.per_chain = generation, per_chain
        self.artifacts = self.simulator.artifacts(generation)
        record = {
            "generation": generation,
            "n_real": counts["n_real"],
            "n_synthetic": counts["n_synthetic"],
            "n_train": counts["n_real"] + counts["n_synthetic"],
            "chains": self.spec.chains,
            **summarise(per_chain),
        }
        if self.rule is not None:
            self._series[generation - 1] = record[self.rule.metric]
            if self._check_due():
                self._check()
        record["seconds"] = time.perf_counter() - started
        return record

    def __iter__(self) -> Iterator[dict[str, float | int]]:
        while not self.done:
            yield self.step()

    def state_dict(self) -> dict:
        """Everything needed to continue after the current generation: a dict of numbers,
        strings, arrays and tensors that ``mad_core.checkpoint.save_state`` writes."""
        state = {"spec_hash": self.spec.spec_hash(), "generation": self.generation,
                 "simulator": self.simulator.state_dict()}
        if self.rule is not None:
            state["stop_history"] = self.history.copy()
        return state
