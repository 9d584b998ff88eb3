"""The multivariate Gaussian model of MAD Section 4."""

from __future__ import annotations

import numpy as np

from mad_core.fields import Field
from mad_core.linalg import psd_factor
from mad_core.models.base import NotFittedError
from mad_core.samples import Samples

COVARIANCE_ESTIMATORS = ("unbiased", "mle")
OPTIONS = {
    "covariance": Field(str, "unbiased", choices=COVARIANCE_ESTIMATORS,
                        help="covariance estimator (denominator n - 1 or n)"),
}


def covariance_denominator(n: int, estimator: str) -> int:
    """The divisor of a scatter matrix of n points: n - 1 for "unbiased" (MAD Eq. 1),
    n for "mle"."""
    return n - 1 if estimator == "unbiased" else n


def covariance_from_scatter(scatter: np.ndarray, n: int, estimator: str) -> np.ndarray:
    """Covariance estimate from a scatter matrix sum_i (x_i - xbar)(x_i - xbar)^T.

    Args:
        scatter: (..., d, d).
        n: number of points behind the scatter.
        estimator: "unbiased" or "mle" (see ``covariance_denominator``).
    """
    return scatter / covariance_denominator(n, estimator)


class GaussianModel:
    """N(mu, Sigma) fitted by sample mean and covariance; biased sampling N(mu, lam Sigma).

    Args:
        covariance: "unbiased" (default; E[Sigma_t] = lam Sigma_{t-1} in a fully
            synthetic loop) or "mle" (shrinks by (n - 1) / n per generation).
    """

    supports_warm_start = False  # the fit is closed form: nothing to start from

    def __init__(self, *, covariance: str = "unbiased"):
        self.covariance = covariance

    def fit(self, samples: Samples, rng: np.random.Generator | None = None,
            previous: "GaussianModel | None" = None) -> "GaussianModel":
        """Fit on samples.x (n, d), n >= 2; labels, rng and previous are unused (closed form)."""
        samples = samples.x
        n = len(samples)
        self.mean_ = samples.mean(axis=0)
        centred = samples - self.mean_
        self.cov_ = covariance_from_scatter(centred.T @ centred, n, self.covariance)
        self.n_fit_ = n
        return self

    def sample(self, n: int, bias: float, rng: np.random.Generator) -> Samples:
        """n samples (n, d) from N(mu, bias * Sigma); bias = 1 is the unbiased model."""
        if not hasattr(self, "mean_"):
            raise NotFittedError("GaussianModel.sample called before fit")
        cov = self.cov_ if bias == 1.0 else bias * self.cov_
        noise = rng.standard_normal((n, len(self.mean_)))
        return Samples(self.mean_ + noise @ psd_factor(cov).T)

    def state_dict(self) -> dict:
        """The fitted mean (d,), covariance (d, d) and training-set size."""
        return {"mean": self.mean_, "cov": self.cov_, "n_fit": self.n_fit_}

    def load_state_dict(self, state: dict) -> "GaussianModel":
        self.mean_, self.cov_, self.n_fit_ = state["mean"], state["cov"], int(state["n_fit"])
        return self
