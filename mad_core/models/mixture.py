"""Gaussian mixture model, fitted by EM (scikit-learn), with per-component biased sampling."""

from __future__ import annotations

import numpy as np

from mad_core.fields import Field, size_field
from mad_core.linalg import psd_factor
from mad_core.models.base import NotFittedError
from mad_core.samples import Samples
from mad_core.seeding import int_seed

COVARIANCE_TYPES = ("full", "diag", "spherical", "tied")
OPTIONS = {
    "n_components": size_field(25, help="mixture components K"),
    "covariance_type": Field(str, "full", choices=COVARIANCE_TYPES,
                             help="scikit-learn covariance_type"),
    "max_iter": size_field(100, help="EM iterations per fit"),
    "em_restarts": size_field(1, help="EM initialisations per fit"),
    "reg_covar": Field(float, 1e-6, low=0.0, help="added to covariance diagonals"),
}
# The fitted attributes of a scikit-learn GaussianMixture that define it (state_dict keys).
_FITTED = ("weights_", "means_", "covariances_", "precisions_cholesky_", "converged_",
           "n_iter_", "lower_bound_")


class GaussianMixtureModel:
    """Mixture of K Gaussians; ``sample(bias=lam)`` draws component k with its fitted
    weight, then a point from N(mu_k, lam Sigma_k).

    Args:
        n_components: K.
        covariance_type: scikit-learn's covariance_type.
        max_iter: EM iterations per fit.
        em_restarts: EM runs from different initialisations (scikit-learn's n_init).
        reg_covar: added to covariance diagonals; keeps components of collapsed
            clusters from becoming singular.
    """

    supports_warm_start = True  # EM can start from the previous generation's parameters

    def __init__(self, *, n_components: int = 25, covariance_type: str = "full",
                 max_iter: int = 100, em_restarts: int = 1, reg_covar: float = 1e-6):
        self.n_components = n_components
        self.covariance_type = covariance_type
        self.max_iter = max_iter
        self.em_restarts = em_restarts
        self.reg_covar = reg_covar

    def _mixture(self, seed: int, warm_start: bool = False):
        # Imported here: scikit-learn takes ~1 s to import, and every trial process of a
        # sweep imports this module, most of them for Gaussian models only.
        from sklearn.mixture import GaussianMixture

        return GaussianMixture(
            n_components=self.n_components, covariance_type=self.covariance_type,
            max_iter=self.max_iter, n_init=1 if warm_start else self.em_restarts,
            reg_covar=self.reg_covar, random_state=seed, warm_start=warm_start)

    def fit(self, samples: Samples, rng: np.random.Generator,
            previous: "GaussianMixtureModel | None" = None) -> "GaussianMixtureModel":
        """Fit on samples.x (n, d) by EM; from ``previous``'s parameters when given."""
        mixture = self._mixture(int_seed(rng), warm_start=previous is not None)
        if previous is not None:
            _set_fitted(mixture, previous.state_dict())
        self.mixture_ = mixture.fit(samples.x)
        self.n_fit_ = len(samples)
        return self

    def state_dict(self) -> dict:
        """The fitted mixture's arrays (weights (K,), means (K, d), covariances, ...)."""
        if not hasattr(self, "mixture_"):
            raise NotFittedError("GaussianMixtureModel.state_dict called before fit")
        return {"n_fit": self.n_fit_, **{name: np.asarray(getattr(self.mixture_, name))
                                         for name in _FITTED}}

    def load_state_dict(self, state: dict) -> "GaussianMixtureModel":
        self.mixture_ = self._mixture(0)
        _set_fitted(self.mixture_, state)
        self.n_fit_ = int(state["n_fit"])
        return self

    def _full_covariances(self) -> np.ndarray:
        """(K, d, d) covariances whatever the covariance_type."""
        mixture = self.mixture_
        k, d = mixture.means_.shape
        covs = mixture.covariances_
        if mixture.covariance_type == "full":
            return covs
        if mixture.covariance_type == "tied":
            return np.broadcast_to(covs, (k, d, d))
        if mixture.covariance_type == "diag":
            return covs[:, :, None] * np.eye(d)
        return covs[:, None, None] * np.eye(d)

    def sample(self, n: int, bias: float, rng: np.random.Generator) -> Samples:
        """n samples (n, d); components keep their weights, covariances scale by bias."""
        if not hasattr(self, "mixture_"):
            raise NotFittedError("GaussianMixtureModel.sample called before fit")
        means = self.mixture_.means_
        weights = self.mixture_.weights_
        counts = rng.multinomial(n, weights / weights.sum())
        factors = psd_factor(self._full_covariances())
        if bias != 1.0:
            factors = np.sqrt(bias) * factors
        component = np.repeat(np.arange(len(means)), counts)
        noise = rng.standard_normal((n, means.shape[1]))
        samples = means[component] + np.einsum("nij,nj->ni", factors[component], noise)
        return Samples(samples[rng.permutation(n)])


def _set_fitted(mixture, state: dict) -> None:
    """Give a scikit-learn GaussianMixture the fitted state of ``state_dict()``, as if it
    had been fitted (a warm start continues EM from it)."""
    for name in _FITTED:
        value = np.asarray(state[name])
        setattr(mixture, name, value.item() if value.ndim == 0 else value)
    mixture.n_features_in_ = mixture.means_.shape[1]
    # precisions_ follows from the Cholesky factors; scikit-learn derives it the same way.
    mixture._set_parameters((mixture.weights_, mixture.means_, mixture.covariances_,
                             mixture.precisions_cholesky_))
