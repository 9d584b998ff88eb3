"""What every model of a self-consuming loop provides.

A model is constructed from keyword-only hyperparameters, then
``fit(samples, rng, previous) -> self`` trains it (``previous``: the model of the
preceding generation, used only for a warm start by models whose
``supports_warm_start`` is true), and ``sample(n, bias, rng)`` draws n samples with
sampling bias ``bias`` in (0, 1] (1 = unbiased). Fitted state ends in ``_``.
"""


class NotFittedError(RuntimeError):
    """sample() was called on a model that has not been fitted."""
