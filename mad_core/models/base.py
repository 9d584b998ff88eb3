"""What every model of a self-consuming loop provides (the registry in
``mad_core.models`` lists them).

A model is constructed from keyword-only options, then ``fit(samples, rng, previous)
-> self`` trains it on a ``Samples`` training set (``previous``: the model of the
preceding generation, used only for a warm start by models whose
``supports_warm_start`` is true), and ``sample(n, bias, rng) -> Samples`` draws n
samples with sampling bias ``bias`` in (0, 1] (1 = unbiased). ``state_dict()`` and
``load_state_dict(state)`` carry the fitted state as arrays and tensors. Fitted state
ends in ``_``.
"""


class NotFittedError(RuntimeError):
    """sample() was called on a model that has not been fitted."""
