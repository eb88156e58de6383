"""Distance of an atomic environment from the training set: Mahalanobis distance and leverage.

For the feature rows ``X`` (``n x m``) of one element in the training set:

- the Mahalanobis distance (Mahalanobis, Proc. Natl. Inst. Sci. India 2, 49 (1936)) of a row ``x``
  is ``sqrt((x - mu)^T S^-1 (x - mu))`` with the mean ``mu`` and covariance ``S`` of ``X``: how many
  standard deviations ``x`` lies from the training data, along the directions the data vary in;
- the leverage, the diagonal of the hat matrix of linear regression (Hoaglin & Welsch, Am. Stat.
  32, 17 (1978)), is ``h(x) = x^T (X^T X)^-1 x``: the variance of a linear model's prediction at
  ``x`` in units of the noise variance. It is the least-squares relative of the D-optimal grade
  (``gamma`` measures the same spread with the maximum norm over an active set, see
  :mod:`aiida_mlip.selection.maxvol`).

Both need an invertible ``m x m`` matrix; ``regularisation * trace / m`` is added to its diagonal
(a ridge), which keeps an element seen in only a few atoms usable and makes unseen directions
far (large score), not singular. Scores are dimensionless; an element absent from training scores
``inf``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ("LeverageModel",)


def _ridge_inverse(matrix: np.ndarray, regularisation: float) -> np.ndarray:
    m = len(matrix)
    ridge = regularisation * max(float(np.trace(matrix)) / m, np.finfo(float).tiny)
    return np.linalg.inv(matrix + ridge * np.eye(m))


@dataclass
class LeverageModel:
    """Per-element mean, inverse covariance and inverse Gram matrix of training feature rows.

    Attributes
    ----------
    mean, precision, gram_inverse : dict[int, array]
        Keyed by atomic number: ``(m,)``, ``(m, m)``, ``(m, m)``.
    """

    mean: dict[int, np.ndarray]
    precision: dict[int, np.ndarray]
    gram_inverse: dict[int, np.ndarray]

    @classmethod
    def fit(cls, features: np.ndarray, numbers: np.ndarray, regularisation: float = 1e-6) -> LeverageModel:
        """Fit on training rows ``features`` ``(n, m)`` with atomic numbers ``numbers`` ``(n,)``."""
        features = np.asarray(features, dtype=np.float64)
        numbers = np.asarray(numbers, dtype=np.int64)
        if features.ndim != 2 or len(features) != len(numbers):
            raise ValueError(f"features of shape {features.shape} do not match {len(numbers)} atomic numbers")
        if regularisation <= 0:
            raise ValueError(f"regularisation must be positive, got {regularisation}")
        mean, precision, gram_inverse = {}, {}, {}
        for number in np.unique(numbers):
            rows = features[numbers == number]
            mu = rows.mean(axis=0)
            centred = rows - mu
            mean[int(number)] = mu
            precision[int(number)] = _ridge_inverse(centred.T @ centred / len(rows), regularisation)
            gram_inverse[int(number)] = _ridge_inverse(rows.T @ rows, regularisation)
        return cls(mean=mean, precision=precision, gram_inverse=gram_inverse)

    def _apply(self, features: np.ndarray, numbers: np.ndarray, kind: str) -> np.ndarray:
        features = np.atleast_2d(np.asarray(features, dtype=np.float64))
        numbers = np.asarray(numbers, dtype=np.int64)
        out = np.full(len(features), np.inf)
        for number in self.mean:
            mask = numbers == number
            if not mask.any():
                continue
            rows = features[mask]
            if kind == "mahalanobis":
                centred = rows - self.mean[number]
                out[mask] = np.sqrt(
                    np.maximum(np.einsum("ij,jk,ik->i", centred, self.precision[number], centred), 0.0)
                )
            else:
                out[mask] = np.einsum("ij,jk,ik->i", rows, self.gram_inverse[number], rows)
        return out

    def mahalanobis(self, features: np.ndarray, numbers: np.ndarray) -> np.ndarray:
        """(n,) Mahalanobis distance of each row from its element's training rows."""
        return self._apply(features, numbers, "mahalanobis")

    def leverage(self, features: np.ndarray, numbers: np.ndarray) -> np.ndarray:
        """(n,) leverage ``x^T (X^T X)^-1 x`` of each row against its element's training rows."""
        return self._apply(features, numbers, "leverage")
