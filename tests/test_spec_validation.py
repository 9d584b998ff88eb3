"""Bad specs are rejected before any work, every problem named with its field."""

import pytest

from mad_core.spec import SpecError, resolve_spec

VALID = {"model": "gaussian", "loop": "fresh_data", "n_init": 100, "n_real": 100,
         "n_syn": 900, "data": {"dim": 10}}


def problems_of(raw) -> dict[str, str]:
    with pytest.raises(SpecError) as caught:
        resolve_spec(raw)
    return {p.field: p.message for p in caught.value.problems}


def with_(**changes):
    raw = {**VALID, **changes}
    return {k: v for k, v in raw.items() if v is not DROP}


DROP = object()

BAD = [
    # (changes, field, words the message must contain)
    ({"colour": "red"}, "colour", "unknown key"),
    ({"seeds": 3}, "seeds", "did you mean 'seed'"),
    ({"model": "vae"}, "model", "allowed: gaussian, gmm"),
    ({"loop": "fresh"}, "loop", "did you mean 'fresh_data'"),
    ({"lam": 0.0}, "lam", "(0, 1]"),
    ({"chains": 10**9}, "chains", "more than half of this machine's"),
    ({"data": {"dim": 100_000}}, "data.dim", "100,000 x 100,000 would take"),
    ({"simulation": "naive", "chains": 10**6, "n_syn": 10**5}, "n_syn",
     "the largest training set"),
    ({"generations": 10**12}, "generations", "set MAD_MAX_GENERATIONS"),
    ({"name": "../../x"}, "name", "must be a plain name"),
    ({"lam": 1.2}, "lam", "(0, 1]"),
    ({"lam": "high"}, "lam", "got 'high'"),
    ({"n_real": -5}, "n_real", ">= 1"),
    ({"n_real": 0}, "n_real", ">= 1"),
    ({"n_syn": -1}, "n_syn", ">= 0"),
    ({"n_init": DROP}, "n_init", "required"),
    ({"n_init": 2.5}, "n_init", "integer"),
    ({"generations": 0}, "generations", ">= 1"),
    ({"chains": True}, "chains", "integer"),
    ({"loop": "fully_synthetic"}, "n_real", "synthetic data only"),
    ({"n_total": 1000, "real_fraction": 0.1}, "n_real", "not both"),
    ({"synthetic_source": "last_k"}, "last_k", "required"),
    ({"last_k": 3}, "last_k", "only used with synthetic_source: last_k"),
    ({"lambda_b": 0.5}, "lambda_b", "only used by loop bertrand"),
    ({"simulation": "exact", "model": "gmm"}, "simulation", "use naive"),
    ({"data": {"dim": 10, "source": "imagenet"}}, "data.source", "allowed"),
    ({"data": {"source": "mnist"}}, "data.root", "required"),
    ({"data": {"dim": 10, "pool_size": 500}}, "data.pool_size", "reshuffle"),
    ({"data": {}}, "data.dim", "required"),
    ({"data": [1, 2]}, "data", "mapping"),
    ({"model_options": {"covariance": "shrunk"}}, "model_options.covariance", "unbiased, mle"),
    ({"n_init": 1}, "n_init", "too small"),
    ({"grid_every": 0}, "grid_every", ">= 1"),
    ({"grid_every": 2}, "grid_every", "image sources"),
    ({"model": "ddpm"}, "data.source", "trains on images"),
    ({"model_options": {"channel_mult": [1, 2]}}, "model_options.channel_mult", "unknown key"),
    ({"model": "gmm", "metrics": {"n_eval": 5, "k": 5}}, "metrics.n_eval", "use n_eval > k"),
    ({"stop": {"metrik": "w2_sq_mean"}}, "stop.metrik", "did you mean 'metric'"),
    ({"stop": {"metric": "w2_sq_meen"}}, "stop.metric", "did you mean 'w2_sq_mean'"),
    ({"stop": {"metric": "fid_mean"}}, "stop.metric", "records w2_mean, w2_sq_mean"),
    ({"stop": {"metric": "w2_sq_sem"}}, "stop.metric", "(and _median, _q05, _q95)"),
    ({"model": "gmm", "metrics": {"n_eval": 3000}, "stop": {"metric": "w2_sq_emp_mean"}},
     "stop.metric", "records precision_mean"),
    ({"stop": {"rel_precision": 0}}, "stop.rel_precision", "> 0"),
    ({"stop": {"rel_precision": 1.0}}, "stop.rel_precision", "must be below 1"),
    ({"stop": {"rel_precision": float("inf")}}, "stop.rel_precision", "finite"),
    ({"stop": {"min_generations": 20}}, "stop.min_generations", ">= 21"),
    ({"stop": {"min_generations": 30}}, "stop.min_generations",
     "exceeds generations = 20, the most the trial runs; lower stop.min_generations or raise "
     "generations"),
    ({"stop": 0.005}, "stop", "mapping"),
]

DIGITS_DDPM = {"model": "ddpm", "loop": "fully_synthetic", "n_init": 500, "n_syn": 500,
               "data": {"source": "digits"}}
BAD_DDPM = [
    ({"model_options": {"chanel_multipliers": [1, 2]}}, "model_options.chanel_multipliers",
     "did you mean 'channel_multipliers'"),
    ({"lam": 0.5, "model_options": {"label_dropout": 0.0}}, "model_options.label_dropout",
     "needs the unconditional model"),
    ({"model_options": {"channel_multipliers": [1, 2, 2, 2, 2]}},
     "model_options.channel_multipliers", "cannot take"),
    ({"model_options": {"channel_multipliers": [1, 0]}},
     "model_options.channel_multipliers[1]", ">= 1"),
    ({"model_options": {"channel_multipliers": 2}}, "model_options.channel_multipliers",
     "a list of"),
    ({"model_options": {"attention_resolutions": [3]}}, "model_options.attention_resolutions",
     "not a UNet resolution"),
    ({"model_options": {"sampler": "ddim"}}, "model_options.sampler_steps", "required"),
    ({"model_options": {"lr": float("nan")}}, "model_options.lr", "finite"),
    ({"model_options": {"pad_to": 4}}, "model_options.pad_to", "smaller than"),
    ({"n_syn": 2_000_000_000}, "n_syn", "more than half of this machine"),
    ({"loop": "fresh_data", "n_real": 500, "n_syn": 500, "generations": 5}, "n_real",
     "without replacement"),
    ({"data": {"source": "mnist", "root": "/no/such/folder"}}, "data.root", "MNIST not found"),
    ({"metrics": {"inception": True}}, "metrics.inception", "Inception weights not found"),
]


@pytest.mark.parametrize("changes, field, words", BAD_DDPM)
def test_each_ddpm_fault_is_named_before_any_work(changes, field, words, monkeypatch):
    monkeypatch.setenv("MAD_INCEPTION_WEIGHTS", "/no/such/inception.pt")
    problems = problems_of({**DIGITS_DDPM, **changes})
    assert field in problems, problems
    assert words in problems[field]


def test_ddpm_problems_are_reported_together():
    problems = problems_of({**DIGITS_DDPM, "lam": 0.5, "grid_every": 0,
                            "data": {"source": "mnist", "root": "/no/such/folder"},
                            "model_options": {"label_dropout": 0.0, "sampler": "ddim"}})
    assert {"grid_every", "data.root", "model_options.label_dropout",
            "model_options.sampler_steps"} <= set(problems)


@pytest.mark.parametrize("changes, field, words", BAD)
def test_each_fault_is_named_with_its_field(changes, field, words):
    problems = problems_of(with_(**changes))
    assert field in problems, problems
    assert words in problems[field]


def test_bertrand_rejects_explicit_sizes_and_needs_lambda_b():
    problems = problems_of({**VALID, "loop": "bertrand"})
    assert set(problems) == {"n_real", "n_syn", "lambda_b"}


def test_all_problems_are_reported_together():
    problems = problems_of({"model": "vae", "loop": "fresh_data", "lam": 2, "n_init": -1,
                            "n_real": 5, "n_syn": 5, "colour": 1, "data": {"dim": 0}})
    assert {"model", "lam", "n_init", "colour", "data.dim"} <= set(problems)


def test_a_rejected_value_is_not_also_reported_missing():
    problems = problems_of(with_(n_real="100"))
    assert problems == {"n_real": "must be an integer >= 1, got '100' (str)"}


def test_error_text_lists_every_problem():
    with pytest.raises(SpecError) as caught:
        resolve_spec(with_(lam=3, model="vae"))
    text = str(caught.value)
    assert text.startswith("invalid trial spec (2 problems)")
    assert "  - lam:" in text and "  - model:" in text


def test_sizes_are_derived_for_every_loop():
    fraction = resolve_spec(with_(n_real=DROP, n_syn=DROP, n_total=1000, real_fraction=0.03))
    assert (fraction.n_real, fraction.n_syn) == (30, 970)
    bertrand = resolve_spec(with_(loop="bertrand", n_real=DROP, n_syn=DROP, lambda_b=0.25))
    assert (bertrand.n_real, bertrand.n_syn) == (100, 25)
    synthetic = resolve_spec(with_(loop="fully_synthetic", n_real=DROP))
    assert (synthetic.n_real, synthetic.n_syn) == (0, 900)


def test_defaults_are_filled_and_simulation_resolved():
    spec = resolve_spec(VALID)
    assert spec.lam == 1.0 and spec.seed == 0 and spec.simulation == "exact"
    assert spec.model_options == {"covariance": "unbiased"}
    assert resolve_spec({**VALID, "data": {"dim": 2, "pool_size": 10**5}}).simulation == "naive"


def test_integral_floats_are_accepted_as_integers():
    assert resolve_spec(with_(n_syn=900.0)).n_syn == 900


def test_stop_defaults_and_fixed_length_without_it():
    assert resolve_spec(VALID).stop is None
    stop = resolve_spec({**VALID, "generations": 3000, "stop": {}}).stop
    assert stop == {"metric": "w2_sq_mean", "rel_precision": 0.005, "min_generations": 50}
    image = resolve_spec({**DIGITS_DDPM, "generations": 100, "stop": {"metric": "fid_median"}})
    assert image.stop["metric"] == "fid_median"


def test_spec_hash_ignores_the_name_only():
    base = resolve_spec(VALID)
    assert resolve_spec({**VALID, "name": "x"}).spec_hash() == base.spec_hash()
    assert resolve_spec({**VALID, "seed": 1}).spec_hash() != base.spec_hash()
    # A null stop rule (the default) is left out, so specs from before it keep their hash.
    assert resolve_spec({**VALID, "stop": None}).spec_hash() == base.spec_hash()
    with_rule = resolve_spec({**VALID, "generations": 100, "stop": {}}).spec_hash()
    assert with_rule != resolve_spec({**VALID, "generations": 100}).spec_hash()
