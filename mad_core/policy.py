"""Loop policies: what each generation's training set is made of.

A policy is built once from the spec; ``composition(t)`` then says, for
generation t, how many real samples come from the fixed initial set, how many
are fresh, and which earlier models contribute synthetic samples. Both
simulators (sample-based and exact Gaussian) execute the same compositions.
"""

from __future__ import annotations

from dataclasses import dataclass

from mad_core.spec import TrialSpec


@dataclass(frozen=True)
class Composition:
    """The training set of one generation (per chain).

    Attributes:
        n_initial_real: the first n samples of the fixed initial real set.
        n_fresh_real: real samples never seen before.
        synthetic_draws: (lag, n) pairs: n new samples from the model ``lag``
            generations back (lag 1 = the previous generation).
        include_pool: also train on every synthetic sample drawn in earlier
            generations (the accumulating pool).
        warm_start: start the fit from the previous model where supported.
    """

    n_initial_real: int
    n_fresh_real: int = 0
    synthetic_draws: tuple[tuple[int, int], ...] = ()
    include_pool: bool = False
    warm_start: bool = False

    @property
    def n_new_synthetic(self) -> int:
        return sum(n for _, n in self.synthetic_draws)


def split_evenly(total: int, parts: int) -> list[int]:
    """total split into `parts` integers differing by at most one, larger first."""
    base, extra = divmod(total, parts)
    return [base + (i < extra) for i in range(parts)]


class LoopPolicy:
    """The composition rule of a spec's loop type and synthetic source."""

    def __init__(self, spec: TrialSpec):
        self.n_init = spec.n_init
        self.n_syn = spec.n_syn
        real = {"fully_synthetic": (0, 0), "synthetic_augmentation": (spec.n_real, 0),
                "bertrand": (spec.n_real, 0), "fresh_data": (0, spec.n_real)}[spec.loop]
        self.n_initial_real, self.n_fresh_real = real
        self.warm_start = spec.loop == "bertrand"
        self.synthetic_source = spec.synthetic_source
        self.last_k = spec.last_k

    @property
    def models_kept(self) -> int:
        """How many past models the loop must keep to build any later generation."""
        return self.last_k if self.synthetic_source == "last_k" else 1

    def composition(self, generation: int) -> Composition:
        """Composition of generation `generation` (1-based; G1 is real data only)."""
        if generation == 1:
            return Composition(n_initial_real=self.n_init)
        if self.synthetic_source == "last_k":
            n_models = min(self.last_k, generation - 1)
            draws = tuple((lag + 1, n) for lag, n in enumerate(split_evenly(self.n_syn, n_models))
                          if n > 0)
        else:
            draws = ((1, self.n_syn),) if self.n_syn > 0 else ()
        return Composition(n_initial_real=self.n_initial_real, n_fresh_real=self.n_fresh_real,
                           synthetic_draws=draws, include_pool=self.synthetic_source == "pool",
                           warm_start=self.warm_start)
