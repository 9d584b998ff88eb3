"""Exact (sufficient statistics) vs naive (draw the points) Gaussian simulation.

    python benchmarks/exact_vs_naive.py

Prints, all measured in this run:
  - time per chain-generation at d = 100, n_real + n_syn = 11,000, exact vs naive
    (target: exact >= 50x faster);
  - exact cost at n = 220 vs n = 11,000 per generation (target: within 1.5x);
  - chains x generations per second of the exact path.

Both paths run on one BLAS thread, as a trial with one CPU does: on a busy machine
multi-threaded LAPACK on 100 x 100 matrices is several times slower, not faster.
"""

from __future__ import annotations

import time

from threadpoolctl import threadpool_limits

from mad_core.loop import SelfConsumingLoop
from mad_core.spec import resolve_spec


def seconds_per_chain_generation(n_total: int, simulation: str, chains: int,
                                 generations: int = 6, repeats: int = 3) -> float:
    """Best of `repeats` runs, generation 1 excluded (it has a different size)."""
    n_real = n_total // 11
    spec = resolve_spec({"model": "gaussian", "loop": "fresh_data", "n_init": n_total,
                         "n_real": n_real, "n_syn": n_total - n_real, "lam": 0.85,
                         "generations": generations, "chains": chains,
                         "simulation": simulation, "data": {"dim": 100}})
    best = float("inf")
    for _ in range(repeats):
        loop = SelfConsumingLoop(spec)
        loop.step()
        started = time.perf_counter()
        for _ in loop:
            pass
        best = min(best, (time.perf_counter() - started) / ((generations - 1) * chains))
    return best


def main() -> None:
    with threadpool_limits(1):
        report()


def report() -> None:
    exact_large = seconds_per_chain_generation(11_000, "exact", chains=100)
    naive_large = seconds_per_chain_generation(11_000, "naive", chains=4)
    exact_small = seconds_per_chain_generation(220, "exact", chains=100)
    print("d = 100, per chain-generation (best of 3):")
    print(f"  naive, n = 11,000: {naive_large * 1e3:9.3f} ms")
    print(f"  exact, n = 11,000: {exact_large * 1e3:9.3f} ms")
    print(f"  exact, n =    220: {exact_small * 1e3:9.3f} ms")
    print(f"speed-up exact vs naive at n = 11,000: {naive_large / exact_large:7.1f}x "
          f"(target >= 50x)")
    print(f"exact cost n = 11,000 vs n = 220:       {exact_large / exact_small:7.2f}x "
          f"(target <= 1.5x)")
    print(f"exact throughput: {1 / exact_large:,.0f} chain-generations per second")


if __name__ == "__main__":
    main()
