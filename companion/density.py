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

    n_pca: int = 30
    n_mixture: int = 40
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
        residual = x - self.pca.inverse_transform(codes)
        # Average variance per discarded direction (PPCA's maximum-likelihood noise level).
        self._residual_variance = float((residual**2).sum(1).mean() / (x.shape[1] - self.n_pca))
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

    def log_density(self, x: np.ndarray) -> np.ndarray:
        """Log-density of each flat image under the full 784-d model, in nats per image.

        The mixture covers the ``n_pca`` kept directions; the discarded ones get an
        isotropic Gaussian whose variance is their average variance (as in probabilistic
        PCA), so an image far from the PCA subspace -- noise, say -- scores very low.
        """
        x = np.asarray(x, np.float64)
        codes = self.encode(x)
        residual = x - self.pca.inverse_transform(codes)
        discarded = x.shape[1] - self.n_pca
        variance = self._residual_variance
        off_subspace = -0.5 * (discarded * np.log(2 * np.pi * variance) + (residual**2).sum(1) / variance)
        return self.mixture.score_samples(codes) + off_subspace

    def log_likelihood(self, x: np.ndarray) -> float:
        """Average of :meth:`log_density` over the images in ``x`` (nats per image)."""
        return float(np.mean(self.log_density(x)))

    def n_parameters(self) -> int:
        """Free parameters of the mixture (weights, means, full covariances) plus the PCA basis."""
        d, k = self.n_pca, self.n_mixture
        return (k - 1) + k * d + k * d * (d + 1) // 2 + self.pca.components_.size + self.pca.mean_.size
