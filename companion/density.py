"""A first generative model: a Gaussian mixture fitted in a PCA space of MNIST (chapter 1).

Sampling draws a point from the mixture in the low-dimensional space and maps it back
to pixels, which is the whole generative recipe in miniature: learn p(x), then sample.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class PcaGaussianMixture:
    """p(x) modelled as a Gaussian mixture over the first ``n_pca`` principal components.

    Attributes after :meth:`fit`: ``pca`` and ``mixture`` (scikit-learn estimators).
    """

    n_pca: int = 40
    n_mixture: int = 10
    seed: int = 0

    def fit(self, x: np.ndarray) -> PcaGaussianMixture:
        """Fit on flat images ``x`` of shape (N, 784), values in [0, 1]."""
        from sklearn.decomposition import PCA
        from sklearn.mixture import GaussianMixture

        x = np.asarray(x, np.float64)
        if x.ndim != 2:
            raise ValueError(f"x must be flat images (N, D), got shape {x.shape}; use layout='flat'")
        if len(x) < max(self.n_pca, self.n_mixture) * 2:
            raise ValueError(
                f"{len(x)} images are too few for n_pca={self.n_pca}, n_mixture={self.n_mixture}"
            )
        self.pca = PCA(n_components=self.n_pca, random_state=self.seed).fit(x)
        codes = self.pca.transform(x)
        self.mixture = GaussianMixture(
            n_components=self.n_mixture, covariance_type="full", random_state=self.seed, reg_covar=1e-4
        ).fit(codes)
        return self

    def encode(self, x: np.ndarray) -> np.ndarray:
        """Flat images (N, 784) -> PCA coordinates (N, n_pca): the latent space."""
        return self.pca.transform(np.asarray(x, np.float64))

    def decode(self, codes: np.ndarray) -> np.ndarray:
        """PCA coordinates (N, n_pca) -> flat images (N, 784) clipped to [0, 1]."""
        return np.clip(self.pca.inverse_transform(codes), 0.0, 1.0).astype(np.float32)

    def sample(self, n: int, seed: int | None = None) -> np.ndarray:
        """Draw ``n`` new images (N, 784) in [0, 1]; the randomness comes from ``seed``."""
        component_rng = np.random.default_rng(seed)
        components = component_rng.choice(self.n_mixture, size=n, p=self.mixture.weights_)
        codes = np.empty((n, self.n_pca))
        for k in range(self.n_mixture):
            idx = np.flatnonzero(components == k)
            if len(idx):
                codes[idx] = component_rng.multivariate_normal(
                    self.mixture.means_[k], self.mixture.covariances_[k], size=len(idx)
                )
        return self.decode(codes)

    def log_likelihood(self, x: np.ndarray) -> float:
        """Average log-density of ``x`` under the mixture, measured in the PCA space (nats)."""
        return float(self.mixture.score(self.encode(x)))

    def n_parameters(self) -> int:
        """Free parameters of the mixture (weights, means, full covariances) plus the PCA basis."""
        d, k = self.n_pca, self.n_mixture
        return (k - 1) + k * d + k * d * (d + 1) // 2 + self.pca.components_.size + self.pca.mean_.size
