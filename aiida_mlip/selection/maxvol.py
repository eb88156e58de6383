"""D-optimality: MaxVol active sets and the extrapolation grade (the greedy batch: :mod:`.greedy_batch`).

A linear model on per-atom descriptor rows ``x`` (``m`` features) is best determined by the ``m``
training rows ``A`` (the *active set*) that span the largest volume, ``|det A|``. Every other row
is then a combination ``x = c A`` with ``c = x A^-1``, and the *extrapolation grade*

    gamma(x) = max_j |(x A^-1)_j|

says how far outside the training data ``x`` lies: ``gamma <= 1`` interpolates, ``gamma > 1``
extrapolates, and taking ``x`` into the active set multiplies the volume by ``gamma``.

- The active set is found with the MaxVol algorithm of Goreinov, Oseledets, Savostyanov, Tyrtyshnikov
  and Zamarashkin, "How to find a good submatrix", in *Matrix Methods: Theory, Algorithms,
  Applications* (World Scientific, 2010): start from a good set of rows (here the greedy-volume
  rows of QR with column pivoting, Businger & Golub, Numer. Math. 7, 269 (1965)), then swap in
  the row ``i`` and out the active row ``j`` of the largest ``|B_ij|`` of ``B = A_full A_sel^-1``
  while it exceeds ``1 + tol``, updating ``B`` by a rank-1 formula.
- Its use as an uncertainty for interatomic potentials, the grade ``gamma`` and the selection of
  configurations that add the most volume follow Podryabinkin & Shapeev, "Active learning of
  linearly parametrized interatomic potentials", Comput. Mater. Sci. 140, 171 (2017).
- One active set per chemical element, over that element's atomic environments, follows
  Lysogorskiy et al., "Active learning strategies for atomic cluster expansion models",
  Phys. Rev. Mater. 7, 043801 (2023).

Rank-deficient rows (an element seen in fewer atoms than there are features, or features that are
linearly dependent) have no invertible ``m x m`` submatrix. :meth:`ActiveSet.build` then selects
``r = rank`` real rows by MaxVol in the row space and completes the set with ``m - r`` *virtual*
rows ``lambda * n_k`` along an orthonormal basis ``n_k`` of the unseen directions, with
``lambda = regularisation * rms row norm``. Rows inside the seen span keep their grade; a row with a
component ``p`` outside it gets ``gamma >= |p . n_k| / lambda``, so it extrapolates. Each time this
happens a :class:`RankDeficientWarning` is issued and a note is kept in :attr:`ActiveSet.notes`.

Shapes: ``n`` rows, ``m`` features. Features are dimensionless as far as this module is concerned.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field

import numpy as np
import scipy.linalg
import scipy.linalg.blas

__all__ = (
    "ActiveSet",
    "ElementActiveSet",
    "MaxVolResult",
    "RankDeficientWarning",
    "extrapolation_grade",
    "maxvol",
)

ACTIVE_SET_FORMAT = "aiida-mlip-active-set"
ACTIVE_SET_VERSION = 1


class RankDeficientWarning(UserWarning):
    """An element's feature rows do not span the feature space; the active set was regularised."""


@dataclass
class MaxVolResult:
    """What :func:`maxvol` found.

    Attributes
    ----------
    indices : (m,) int
        Rows of the input that form the active set, in the order of the columns of ``coefficients``.
    n_swaps : int
        Row exchanges made after the greedy start.
    matrix : (n, m) array
        The input, for :attr:`coefficients` (formed in double precision when first asked for).
    """

    indices: np.ndarray
    n_swaps: int
    matrix: np.ndarray = field(repr=False)
    _coefficients: np.ndarray | None = field(default=None, repr=False)

    @property
    def coefficients(self) -> np.ndarray:
        """(n, m) ``B = A A[indices]^-1``; ``gamma`` of row ``i`` is ``abs(B[i]).max()``."""
        if self._coefficients is None:
            self._coefficients = self.matrix @ np.linalg.inv(self.matrix[self.indices])
        return self._coefficients

    @property
    def grades(self) -> np.ndarray:
        """(n,) extrapolation grade of every row against the set; ``<= 1 + tol`` after convergence."""
        return _row_max_abs(self.coefficients)


def _greedy_rows(
    matrix: np.ndarray, work: np.ndarray, block: int = 16, pool: int = 4
) -> tuple[np.ndarray, float]:
    """Greedy volume: ``m`` rows, each (nearly) the one farthest from the span of those before.

    QR with column pivoting of ``matrix.T`` (Businger & Golub, Numer. Math. 7, 269 (1965)) picks,
    one at a time, the row of largest residual norm outside the span of the rows picked so far; each
    pick costs a pass over the matrix to update the residuals. Here ``block`` rows are picked per
    pass: the exact pivoted QR among the ``pool * block`` rows of largest residual, then one product
    ``work @ Q`` updates the residual of every row. ``work`` is ``matrix``, possibly in single
    precision. Also returns ``smallest / largest`` residual norm of the picks, zero (or nearly) when
    the matrix is rank-deficient.
    """
    n, m = matrix.shape
    residual = np.einsum("ij,ij->i", work, work).astype(np.float64)
    basis = np.zeros((0, m))
    chosen: list[int] = []
    norms: list[float] = []
    while len(chosen) < m:
        take = min(block, m - len(chosen))
        count = min(n - len(chosen), pool * take)
        candidates = np.argpartition(residual, -count)[-count:]
        vectors = matrix[candidates]
        for _ in range(2):  # project out the span so far, twice for orthogonality to working precision
            vectors = vectors - (vectors @ basis.T) @ basis
        q, r, pivots = scipy.linalg.qr(vectors.T, pivoting=True, mode="economic", check_finite=False)
        diagonal = np.abs(np.diag(r))[:take]
        if len(diagonal) == 0 or diagonal[0] == 0.0:
            norms.append(0.0)
            break
        # copies of one environment (perfect-lattice frames) can fill the pool: keep the picks clearly
        # outside the span so far and look over every row again, rather than take a copy's zero residual
        take = max(1, int((diagonal > 1e-8 * diagonal[0]).sum()))
        diagonal = diagonal[:take]
        chosen.extend(candidates[pivots[:take]].tolist())
        norms.extend(diagonal.tolist())
        basis = np.vstack([basis, q[:, :take].T])
        projection = work @ q[:, :take].astype(work.dtype)
        residual -= np.einsum("ij,ij->i", projection, projection).astype(np.float64)
        residual[chosen] = -np.inf
    largest = max(norms)
    ratio = min(norms) / largest if largest > 0 and len(chosen) == m else 0.0
    return np.asarray(chosen, dtype=np.int64), float(ratio)


def _swap_until_dominant(coefficients: np.ndarray, active: np.ndarray, tol: float, max_swaps: int) -> int:
    """Goreinov et al.'s row exchanges on ``B`` in place; ``active[j]`` is the row at column ``j``.

    ``coefficients`` must hold ``B = A A_active^-1`` (so its ``active`` rows are the identity). Each
    exchange of row ``i`` into column ``j`` multiplies ``|det A_active|`` by ``|B_ij| > 1 + tol`` and
    updates ``B <- B - B[:, j] (B[i] - e_j) / B_ij``. Returns the number of exchanges.
    """
    m = coefficients.shape[1]
    n_swaps = 0
    # B is C-ordered, so B.T is Fortran-ordered and BLAS ger updates it in place: B.T += row (x) column
    ger = scipy.linalg.blas.get_blas_funcs("ger", (coefficients,))
    while n_swaps < max_swaps:
        flat = int(np.argmax(np.abs(coefficients)))
        i, j = divmod(flat, m)
        pivot = coefficients[i, j]
        if abs(pivot) <= 1.0 + tol:
            break
        row = coefficients[i].copy()
        row[j] -= 1.0
        column = coefficients[:, j].copy()
        updated = ger(-1.0 / pivot, row, column, a=coefficients.T, overwrite_a=True)
        if not np.shares_memory(updated, coefficients):
            coefficients[...] = updated.T
        active[j] = i
        n_swaps += 1
    return n_swaps


def _exchange(
    matrix: np.ndarray, active: np.ndarray, tol: float, block: int, max_swaps: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Exchange rows until every grade is ``<= 1 + tol``; returns the active rows, grades, ``B`` and swaps."""
    n, m = matrix.shape
    n_swaps = 0
    while True:
        # every exchange only increases |det|, so the active submatrix stays invertible
        coefficients = matrix @ np.linalg.inv(matrix[active])
        grades = np.abs(coefficients).max(axis=1)
        if not (grades > 1.0 + tol).any() or n_swaps >= max_swaps:
            return active, grades, coefficients, n_swaps
        # exchange among the rows of largest grade: the violators and those likely to become ones
        top = np.argpartition(grades, -block)[-block:] if n > block else np.arange(n)
        top = top[~np.isin(top, active)]
        rows = np.concatenate([active, top])
        local = coefficients[rows]
        local_active = np.arange(m)
        n_swaps += _swap_until_dominant(local, local_active, tol, max_swaps - n_swaps)
        active = rows[local_active]


def maxvol(
    matrix: np.ndarray,
    tol: float = 1e-3,
    block: int | None = None,
    max_swaps: int | None = None,
) -> MaxVolResult:
    """Find ``m`` rows of an ``(n, m)`` matrix whose submatrix has (locally) maximal ``|det|``.

    The algorithm of Goreinov et al. (2010), with the exchanges done in blocks so that a large
    ``n`` costs a few matrix products rather than one pass over ``B`` per exchange: ``B`` is formed
    for all rows, the ``block`` rows of largest grade (plus the active ones) are exchanged among
    themselves until dominant, and ``B`` is formed again, until no row has a grade over ``1 + tol``.
    The result is the same kind of fixed point as the one-row-at-a-time algorithm.

    The exchanges only reach a local maximum of the volume (a dominant submatrix). Goreinov et al.
    start from the pivot rows of LU with partial pivoting; here the start is the greedy-volume
    choice of QR with column pivoting of the transpose (Businger & Golub 1965), picked 16 rows per
    pass over the matrix, which starts far closer to the maximum: on matrices with a planted
    maximal-volume subset it is found in our tests where the LU start stopped at a local maximum
    of 1e-9 of its volume, and few exchanges remain to be made.

    Parameters
    ----------
    matrix : (n, m) array, ``n >= m``, full column rank
        One row per atomic environment.
    tol : float
        Exchange while some ``|B_ij| > 1 + tol``; at the end every row has ``gamma <= 1 + tol``.
    block : int, optional
        Rows exchanged between two full products; default ``max(8192, 64 m)``.
    max_swaps : int, optional
        Upper bound on the exchanges (default ``100 m``), a guard against cycling through round-off.

    Raises
    ------
    ValueError
        For ``n < m`` or a rank-deficient matrix (use :meth:`ActiveSet.build`, which regularises).
    """
    matrix = np.asarray(matrix, dtype=np.float64)
    if matrix.ndim != 2:
        raise ValueError(f"maxvol needs a 2-d matrix, got shape {matrix.shape}")
    n, m = matrix.shape
    if n < m or m == 0:
        raise ValueError(f"maxvol needs at least as many rows as columns, got shape {matrix.shape}")
    if not np.isfinite(matrix).all():
        raise ValueError("maxvol: the matrix holds NaN or infinite values")
    block = block or max(8192, 64 * m)
    max_swaps = max_swaps if max_swaps is not None else 100 * m
    # a large matrix is searched in single precision (half the memory traffic) to tol / 2, which
    # leaves room for its rounding (~1e-6 relative): the grades in double precision are <= 1 + tol
    single = n * m >= 1 << 20
    work = matrix.astype(np.float32) if single else matrix
    active, ratio = _greedy_rows(matrix, work)
    if ratio < 1e-10:
        raise ValueError("maxvol: the matrix is rank-deficient (no invertible m x m submatrix)")
    active, _, coefficients, n_swaps = _exchange(work, active, tol / 2 if single else tol, block, max_swaps)
    return MaxVolResult(
        indices=active, n_swaps=n_swaps, matrix=matrix, _coefficients=None if single else coefficients
    )


def _product(features: np.ndarray, inverse: np.ndarray) -> np.ndarray:
    """``features @ inverse``, in single precision for large inputs (grades need ~1e-6, not 1e-16)."""
    if features.size >= 1 << 20:
        return features.astype(np.float32) @ inverse.astype(np.float32)
    return features @ inverse


def _row_max_abs(values: np.ndarray) -> np.ndarray:
    """``abs(values).max(axis=1)`` without an ``abs`` copy of the array."""
    return np.maximum(values.max(axis=1), -values.min(axis=1))


def extrapolation_grade(features: np.ndarray, inverse: np.ndarray) -> np.ndarray:
    """``gamma = max_j |(x A^-1)_j|`` of each row ``x`` of ``features`` (Podryabinkin & Shapeev 2017).

    Parameters
    ----------
    features : (n, m) array
    inverse : (m, m) array
        Inverse of the active-set matrix.

    Returns
    -------
    (n,) array, dimensionless.
    """
    features = np.atleast_2d(np.asarray(features, dtype=np.float64))
    if features.shape[1] != inverse.shape[0]:
        raise ValueError(f"features have {features.shape[1]} columns, the active set {inverse.shape[0]}")
    if len(features) == 0:
        return np.zeros(0)
    return _row_max_abs(features @ inverse)


@dataclass
class ElementActiveSet:
    """The active set of one element.

    Attributes
    ----------
    rows : (m, m) array
        Active feature rows; virtual rows (regularisation) included.
    source : (m, 2) int array
        ``(frame, atom)`` each row came from in the set it was built from; ``(-1, -1)`` for virtual rows.
    inverse : (m, m) array
        ``rows^-1``.
    """

    rows: np.ndarray
    source: np.ndarray
    inverse: np.ndarray = field(default=None)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        self.rows = np.asarray(self.rows, dtype=np.float64)
        self.source = np.asarray(self.source, dtype=np.int64).reshape(-1, 2)
        if self.inverse is None:
            self.inverse = np.linalg.inv(self.rows)

    @property
    def n_virtual(self) -> int:
        return int((self.source[:, 0] < 0).sum())

    def grade(self, features: np.ndarray) -> np.ndarray:
        """(n,) extrapolation grade of feature rows of this element."""
        return extrapolation_grade(features, self.inverse)


def _build_element(
    features: np.ndarray, source: np.ndarray, tol: float, regularisation: float, rank_rtol: float
) -> tuple[ElementActiveSet, int]:
    """Active set of one element's rows; returns it and the numerical rank of the rows."""
    n, m = features.shape
    gram = features.T @ features
    eigenvalues, eigenvectors = np.linalg.eigh(gram)
    largest = eigenvalues[-1] if n else 0.0
    rank = min(int((eigenvalues > rank_rtol**2 * largest).sum()), n) if largest > 0 else 0
    chosen = None
    while rank and chosen is None:
        # the eigenvalue test can pass rows whose greedy volume still vanishes (many near-copies of
        # one environment, e.g. perfect-lattice frames, searched in single precision): one
        # direction fewer until maxvol finds an invertible submatrix
        try:
            chosen = maxvol(features @ eigenvectors[:, m - rank :] if rank < m else features, tol=tol).indices
        except ValueError as exception:
            if "rank-deficient" not in str(exception):
                raise
            rank -= 1
    if rank == m:
        return ElementActiveSet(rows=features[chosen], source=source[chosen]), rank
    rms = float(np.sqrt((features**2).sum(axis=1).mean())) if n else 0.0
    scale = regularisation * (rms if rms > 0 else 1.0)
    null = eigenvectors[:, : m - rank]
    if rank:
        real_rows, real_source = features[chosen], source[chosen]
    else:
        real_rows, real_source = np.zeros((0, m)), np.zeros((0, 2), dtype=np.int64)
    rows = np.vstack([real_rows, scale * null.T])
    sources = np.vstack([real_source, np.full((m - rank, 2), -1, dtype=np.int64)])
    return ElementActiveSet(rows=rows, source=sources), rank


@dataclass
class ActiveSet:
    """Per-element active sets (Lysogorskiy et al. 2023) and the grade of new environments.

    Attributes
    ----------
    elements : dict[int, ElementActiveSet]
        Keyed by atomic number.
    n_features : int
    notes : list[str]
        What was regularised and why.
    """

    elements: dict[int, ElementActiveSet]
    n_features: int
    notes: list[str] = field(default_factory=list)

    @classmethod
    def build(
        cls,
        features: np.ndarray,
        numbers: np.ndarray,
        frame_index: np.ndarray | None = None,
        atom_index: np.ndarray | None = None,
        tol: float = 1e-3,
        regularisation: float = 0.1,
        rank_rtol: float = 1e-6,
    ) -> ActiveSet:
        """Select the active set of every element among training feature rows.

        Parameters
        ----------
        features : (n, m) array
            One row per atom of the training set.
        numbers : (n,) int
            Atomic number of each row's atom.
        frame_index, atom_index : (n,) int, optional
            Where each row comes from, kept in :attr:`ElementActiveSet.source`.
        tol : float
            MaxVol tolerance: every training row ends with ``gamma <= 1 + tol``.
        regularisation : float
            Length of the virtual rows, relative to the rms row norm, when an element's rows are
            rank-deficient (see the module docstring).
        rank_rtol : float
            Singular values below ``rank_rtol`` times the largest count as zero.
        """
        features = np.asarray(features, dtype=np.float64)
        numbers = np.asarray(numbers, dtype=np.int64)
        if features.ndim != 2 or len(features) != len(numbers):
            raise ValueError(f"features of shape {features.shape} do not match {len(numbers)} atomic numbers")
        if not np.isfinite(features).all():
            raise ValueError("the training features hold NaN or infinite values")
        if regularisation <= 0:
            raise ValueError(f"regularisation must be positive, got {regularisation}")
        n, m = features.shape
        frame_index = np.full(n, -1) if frame_index is None else np.asarray(frame_index)
        atom_index = np.arange(n) if atom_index is None else np.asarray(atom_index)
        source = np.stack([frame_index, atom_index], axis=1)
        sets, notes = {}, []
        for number in np.unique(numbers):
            mask = numbers == number
            element_set, rank = _build_element(features[mask], source[mask], tol, regularisation, rank_rtol)
            sets[int(number)] = element_set
            if rank < m:
                from ase.data import chemical_symbols

                note = (
                    f"{chemical_symbols[number]}: {int(mask.sum())} environments of rank {rank} < {m} features; "
                    f"the active set holds {rank} real rows and {m - rank} virtual rows of length "
                    f"{regularisation} x rms row norm along the unseen directions"
                )
                notes.append(note)
                warnings.warn(note, RankDeficientWarning, stacklevel=2)
        return cls(elements=sets, n_features=m, notes=notes)

    @classmethod
    def empty(cls, numbers: list[int], n_features: int, scale: float | dict[int, float] = 1.0) -> ActiveSet:
        """An active set with only virtual rows ``scale * I``: everything of norm above ``scale`` extrapolates.

        The start of a selection with no training set.
        """
        sets = {}
        for number in numbers:
            length = scale[number] if isinstance(scale, dict) else scale
            sets[int(number)] = ElementActiveSet(
                rows=length * np.eye(n_features), source=np.full((n_features, 2), -1, dtype=np.int64)
            )
        return cls(elements=sets, n_features=n_features, notes=["started from virtual rows only"])

    def grade(self, features: np.ndarray, numbers: np.ndarray) -> np.ndarray:
        """(n,) extrapolation grade of each row; ``inf`` for an element the active set has not seen."""
        features = np.asarray(features, dtype=np.float64)
        numbers = np.asarray(numbers, dtype=np.int64)
        if features.ndim != 2 or features.shape[1] != self.n_features or len(features) != len(numbers):
            raise ValueError(
                f"features of shape {features.shape} and {len(numbers)} numbers do not fit "
                f"an active set of {self.n_features} features"
            )
        grades = np.full(len(features), np.inf)
        for number, element_set in self.elements.items():
            mask = numbers == number
            if mask.all():  # one element: no copy of the rows
                return _row_max_abs(_product(features, element_set.inverse)).astype(np.float64)
            if mask.any():
                grades[mask] = _row_max_abs(_product(features[mask], element_set.inverse))
        return grades

    def log_volume(self) -> dict[int, float]:
        """``log |det A|`` of each element's active set."""
        return {number: float(np.linalg.slogdet(s.rows)[1]) for number, s in self.elements.items()}

    # ------------------------------------------------------------------ files
    def save(self, path: str | os.PathLike) -> None:
        """Write the active set to an ``.npz`` file (plain arrays, loadable without pickle)."""
        arrays = {
            "format": np.array(ACTIVE_SET_FORMAT),
            "format_version": np.array(ACTIVE_SET_VERSION),
            "n_features": np.array(self.n_features),
            "numbers": np.array(sorted(self.elements), dtype=np.int64),
            "notes": np.array(self.notes if self.notes else [""], dtype=str),
        }
        for number, element_set in self.elements.items():
            arrays[f"rows_{number}"] = element_set.rows
            arrays[f"source_{number}"] = element_set.source
        np.savez(path, **arrays)

    @classmethod
    def load(cls, path: str | os.PathLike) -> ActiveSet:
        """Read a file written by :meth:`save`."""
        with np.load(path, allow_pickle=False) as data:
            if "format" not in data or str(data["format"]) != ACTIVE_SET_FORMAT:
                raise ValueError(f"{path} is not an aiida-mlip active-set file")
            if int(data["format_version"]) > ACTIVE_SET_VERSION:
                raise ValueError(f"{path} has active-set format version {int(data['format_version'])}")
            sets = {
                int(number): ElementActiveSet(rows=data[f"rows_{number}"], source=data[f"source_{number}"])
                for number in data["numbers"]
            }
            notes = [str(note) for note in data["notes"] if str(note)]
            return cls(elements=sets, n_features=int(data["n_features"]), notes=notes)
