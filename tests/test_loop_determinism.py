"""Same spec and seed, same records; a loop resumed from a saved state continues
bit-identically to an uninterrupted run."""

import pytest

from mad_core.checkpoint import load_state, state_bytes
from mad_core.loop import TIMING_KEYS, SelfConsumingLoop, StateMismatchError
from mad_core.spec import resolve_spec

SPECS = {
    # The exact simulator's two fits: in a tridiagonal basis (one model kept, no real
    # set reused; bidiagonal factors in the state), and in the original basis.
    "exact_fresh": {"model": "gaussian", "loop": "fresh_data", "n_init": 30, "n_real": 10,
                    "n_syn": 40, "lam": 0.9, "chains": 8, "data": {"dim": 4}},
    "exact_fresh_last_k": {"model": "gaussian", "loop": "fresh_data", "n_init": 30,
                           "n_real": 10, "n_syn": 40, "lam": 0.9, "synthetic_source": "last_k",
                           "last_k": 2, "chains": 8, "data": {"dim": 4}},
    "exact_augmentation_pool": {"model": "gaussian", "loop": "synthetic_augmentation",
                                "n_init": 20, "n_real": 25, "n_syn": 10,
                                "synthetic_source": "pool", "chains": 8, "data": {"dim": 4}},
    "naive_finite_fresh": {"model": "gaussian", "loop": "fresh_data", "n_init": 20,
                           "n_real": 15, "n_syn": 30, "chains": 3,
                           "data": {"dim": 3, "pool_size": 60, "reshuffle": True}},
    "gmm_bertrand": {"model": "gmm", "loop": "bertrand", "n_init": 200, "lambda_b": 0.5,
                     "lam": 0.8, "model_options": {"n_components": 4},
                     "data": {"source": "gmm_grid", "modes_per_side": 2},
                     "metrics": {"n_eval": 200, "k": 3}},
    "gmm_rosenbrock_pool": {"model": "gmm", "loop": "fully_synthetic", "n_init": 150,
                            "n_syn": 150, "synthetic_source": "pool",
                            "model_options": {"n_components": 3},
                            "data": {"source": "rosenbrock"}, "metrics": {"n_eval": 150}},
}


def spec_of(name, generations=6, seed=3):
    return resolve_spec({**SPECS[name], "generations": generations, "seed": seed})


def without_timing(records):
    return [{k: v for k, v in r.items() if k not in TIMING_KEYS} for r in records]


@pytest.mark.parametrize("name", SPECS)
def test_resumed_run_matches_uninterrupted_run(name):
    spec = spec_of(name)
    uninterrupted = without_timing(SelfConsumingLoop(spec))

    first_half = SelfConsumingLoop(spec)
    records = [first_half.step() for _ in range(3)]
    saved = load_state(state_bytes(first_half.state_dict()))  # as a checkpoint would
    del first_half
    records += list(SelfConsumingLoop(spec, state=saved))

    assert without_timing(records) == uninterrupted  # exact equality, floats included


@pytest.mark.parametrize("name", ["exact_fresh_last_k", "gmm_bertrand"])
def test_same_seed_same_records_other_seed_other_records(name):
    once = without_timing(SelfConsumingLoop(spec_of(name, generations=3)))
    again = without_timing(SelfConsumingLoop(spec_of(name, generations=3)))
    other = without_timing(SelfConsumingLoop(spec_of(name, generations=3, seed=4)))
    assert once == again
    assert once != other


def test_state_of_another_spec_is_refused():
    loop = SelfConsumingLoop(spec_of("exact_fresh_last_k"))
    loop.step()
    with pytest.raises(StateMismatchError, match="resume with the spec"):
        SelfConsumingLoop(spec_of("exact_fresh_last_k", seed=9), state=loop.state_dict())
