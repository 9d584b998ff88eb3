"""The stop rule: a trial ends at the first check where its own limit is known to the
precision asked, the same generation after a resume, and analysis takes it as complete."""

import numpy as np
import pandas as pd
import pytest

from analysis.estimates import asymptote_table
from analysis.load import Sweep
from analysis.params import parse_parameter
from mad_core.checkpoint import load_state, state_bytes
from mad_core.convergence import StopRule, estimate_asymptote
from mad_core.loop import TIMING_KEYS, SelfConsumingLoop
from mad_core.spec import STOP_SUMMARIES, resolve_spec, trial_metrics

# A fresh data loop with a short autocorrelation time (lambda a = 0.35): its W2^2 limit is
# known to +-2 % after a couple of hundred generations, well before the cap.
STOPPING = {"model": "gaussian", "loop": "fresh_data", "n_init": 30, "n_real": 20,
            "n_syn": 20, "lam": 0.7, "chains": 10, "generations": 1000, "seed": 1,
            "data": {"dim": 2}, "stop": {"rel_precision": 0.02, "min_generations": 30}}


def without_timing(records):
    return [{k: v for k, v in r.items() if k not in TIMING_KEYS} for r in records]


def spec_with(**changes):
    return resolve_spec({**STOPPING, **changes})


@pytest.fixture(scope="module")
def stopped():
    """(the loop after it stopped, its records)."""
    loop = SelfConsumingLoop(spec_with())
    return loop, list(loop)


def test_stops_at_the_first_check_that_meets_the_rule(stopped):
    loop, records = stopped
    last = len(records)
    assert loop.done and loop.stopped_early and 30 < last < 1000
    series = np.array([r["w2_sq_mean"] for r in records])
    np.testing.assert_array_equal(loop.history, series)
    checks = [c for c in range(1, last + 1) if loop.rule.next_check(c) == c]
    assert checks[-1] == last  # it stops at a check
    final = estimate_asymptote(series)
    assert final.converged and final.relative_half_width <= 0.02
    assert final == loop.estimate and loop.rule.check(series)[0]
    for check in checks[:-1]:  # and at no earlier one was the rule met
        assert not loop.rule.check(series[:check])[0], check
    assert loop.stop_status.startswith(f"converged at G{last}: w2_sq_mean = ")


def test_the_rule_needs_both_half_widths_within_the_precision():
    """Met at the wider of the batch-means and the autocorrelation-time half-widths,
    not at the narrower."""
    rng = np.random.default_rng(5)
    noise = rng.standard_normal(2000)
    series = np.empty(2000)
    series[0] = noise[0]
    for t in range(1, 2000):  # AR(1), phi = 0.8, around 10
        series[t] = 0.8 * series[t - 1] + 0.6 * noise[t]
    series += 10.0
    estimate = estimate_asymptote(series)
    assert estimate.converged
    kept = series[estimate.burn_in:]
    widths = sorted([estimate.high - estimate.value, 1.96 * kept.std(ddof=1) * np.sqrt(
        estimate.autocorrelation_time / len(kept))])
    assert widths[0] < widths[1]
    narrow, wide = (w / estimate.value for w in widths)
    assert not StopRule("x", narrow * 1.0001, 50).check(series)[0]
    assert StopRule("x", wide * 1.0001, 50).check(series)[0]


def test_the_rule_only_ends_the_run(stopped):
    """The records of a stopped run are the first ones of a fixed-length run, key for key."""
    _, records = stopped
    fixed = SelfConsumingLoop(spec_with(stop=None, generations=len(records) + 5))
    assert not fixed.rule and fixed.stop_status == "" and "stop_history" not in fixed.state_dict()
    assert without_timing(records) == without_timing(list(fixed))[:len(records)]


@pytest.mark.parametrize("saved_at", ["before the first check", "at a check",
                                      "between checks", "where it stopped"])
def test_a_resumed_run_stops_at_the_same_generation(stopped, saved_at):
    loop, records = stopped
    last = len(records)
    generation = {"before the first check": 12, "at a check": loop.rule.next_check(last // 2),
                  "between checks": loop.rule.next_check(last // 2) + 3,
                  "where it stopped": last}[saved_at]
    first = SelfConsumingLoop(spec_with())
    resumed_records = [first.step() for _ in range(generation)]
    saved = load_state(state_bytes(first.state_dict()))  # as a checkpoint would
    del first
    resumed = SelfConsumingLoop(spec_with(), state=saved)
    assert resumed.done == (generation == last)
    resumed_records += list(resumed)
    assert without_timing(resumed_records) == without_timing(records)  # floats included
    assert resumed.stopped_early and resumed.stop_status == loop.stop_status


def test_a_rule_never_met_runs_to_generations():
    loop = SelfConsumingLoop(spec_with(generations=60, stop={"rel_precision": 1e-6,
                                                            "min_generations": 30}))
    records = list(loop)
    assert len(records) == 60 and loop.done and not loop.stopped_early and not loop.converged
    assert loop.stop_status.startswith("not converged at G60: w2_sq_mean")
    unchecked = SelfConsumingLoop(spec_with())
    assert unchecked.stop_status == "w2_sq_mean: no check yet (the first at G30)"


@pytest.mark.parametrize("raw", [
    {"model": "gaussian", "loop": "fresh_data", "n_init": 20, "n_real": 10, "n_syn": 10,
     "data": {"dim": 2}},
    {"model": "gaussian", "loop": "fresh_data", "n_init": 20, "n_real": 10, "n_syn": 10,
     "data": {"dim": 2, "pool_size": 100, "reshuffle": True}},
    {"model": "gmm", "loop": "fully_synthetic", "n_init": 100, "n_syn": 100,
     "model_options": {"n_components": 4}, "data": {"source": "gmm_grid", "modes_per_side": 2},
     "metrics": {"n_eval": 100, "k": 3}},
    {"model": "gmm", "loop": "fully_synthetic", "n_init": 100, "n_syn": 100,
     "model_options": {"n_components": 2}, "data": {"source": "rosenbrock"},
     "metrics": {"n_eval": 2001, "k": 3}},
], ids=["exact gaussian", "naive gaussian", "gmm grid with emd", "rosenbrock without emd"])
def test_the_spec_knows_the_metrics_the_records_have(raw):
    """What stop.metric is validated against is what the loop records."""
    spec = resolve_spec({**raw, "generations": 1})
    record = SelfConsumingLoop(spec).step()
    summaries = {key for key in record if key.rsplit("_", 1)[-1] in STOP_SUMMARIES}
    names = trial_metrics(spec.to_dict())
    assert summaries == {f"{name}_{summary}" for name in names for summary in STOP_SUMMARIES}


def test_stop_parameters_parse_as_their_spec_types():
    assert parse_parameter("stop.metric", "w2_sq_mean") == "w2_sq_mean"
    assert parse_parameter("stop.rel_precision", "0.005") == 0.005
    assert parse_parameter("stop.min_generations", "50") == 50


def sweep_of(trials: list[tuple[dict, list[dict], str]]) -> Sweep:
    """A loaded sweep's table for (parameters, records, run status) of each trial."""
    rows = [{"run_id": f"run{index}", "parent_run_id": "parent", "trial_id": f"trial{index}",
             "status": status, "spec_hash": "0" * 12, **parameters, **record}
            for index, (parameters, records, status) in enumerate(trials)
            for record in records]
    parameters = tuple(trials[0][0])
    return Sweep(name="stop", experiment_id="0", tracking_uri="", records=pd.DataFrame(rows),
                 parameters=parameters, metrics=("w2_sq_mean",), axes=())


def test_analysis_takes_a_finished_stopped_trial_as_complete(stopped):
    """Seeds stopped at different generations: each trial's limit is the loop's own, the
    group pools their common prefix, and a trial that failed before its rule was met is
    incomplete."""
    loop, records = stopped
    other = SelfConsumingLoop(spec_with(seed=2))
    other_records = list(other)
    assert other.stopped_early and len(other_records) != len(records)

    def parameters(seed):
        return {"seed": seed, "generations": 1000, "stop": None, "stop.metric": "w2_sq_mean",
                "stop.rel_precision": 0.02, "stop.min_generations": 30}

    columns = ("generation", "w2_sq_mean")
    trimmed = [[{k: r[k] for k in columns} for r in run] for run in (records, other_records)]
    finished = sweep_of([(parameters(1), trimmed[0], "FINISHED"),
                         (parameters(2), trimmed[1], "FINISHED")])
    table = asymptote_table(finished, ["w2_sq"]).set_index("scope")
    trial = table.loc["trial"].set_index("run_id").loc["run0"]
    assert trial["converged"] and trial["value"] == loop.estimate.value
    group = table.loc["group"]
    shortest = min(len(records), len(other_records))
    assert group["converged"] and group["seeds"] == 2
    assert group["burn_in"] + group["retained"] == shortest

    failed = sweep_of([(parameters(1), trimmed[0], "FINISHED"),
                       (parameters(2), trimmed[1][:40], "FAILED")])
    table = asymptote_table(failed, ["w2_sq"])
    reasons = dict(zip(table["run_id"].fillna("group"), table["reason"]))
    assert reasons == {"run0": "", "run1": "incomplete: 40 of 1000 generations logged",
                       "group": "incomplete: 40 of 1000 generations logged (seed 2 of 2)"}
