"""The two tests ``shift`` runs, SciPy's results without importing ``scipy.stats`` for the usual cases.

``scipy.stats`` takes 0.5-0.7 s and ~45 MiB to import (it builds every distribution's docstring), more
than the tests themselves cost on a 1M-row profile's split shift, and the shift needs only two numbers
from it: the two-sample Kolmogorov-Smirnov test (``ks_2samp``, two-sided) and the chi-squared test of a
2 x k table (``chi2_contingency``). Here they are SciPy's own formulas (SciPy 1.17, BSD licence), each
step as SciPy takes it so the floats come out the same, with ``scipy.special`` for the distribution
functions (0.2 s, ~11 MiB). What is not reproduced is handed to SciPy itself: the exact KS p-value of
small samples, and the Kolmogorov distribution's rare branches (tiny samples or a statistic near 0).
``tests/data/test_shift.py`` holds the results equal to SciPy's over the branches.
"""

from __future__ import annotations

import numpy as np

__all__ = ["chi2_contingency_pvalue", "ks_2samp"]

_MAX_EXACT = 10_000  # ks_2samp's MAX_AUTO_N: up to this many values on both sides its p-value is exact
_SQRT2PI = np.sqrt(2 * np.pi)
_SQRT3 = np.sqrt(3)
_PI_SQUARED = np.pi ** 2
_PI_FOUR = np.pi ** 4
_PI_SIX = np.pi ** 6
_MIN_LOG = -708


def ks_2samp(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """``scipy.stats.ks_2samp(a, b)``'s statistic and p-value (two-sided, ``method="auto"``); no NaN.

    The statistic is the largest gap between the two empirical CDFs, which change only at the samples'
    values: SciPy evaluates both CDFs at every value of both samples (two binary searches of each
    value), here each sample's own CDF comes from the runs of its sorted values and only its distinct
    values are looked up in the other, the same differences at half the searches or fewer.
    """
    n1, n2 = len(a), len(b)
    if max(n1, n2) <= _MAX_EXACT:
        from scipy.stats import ks_2samp as scipy_ks_2samp

        test = scipy_ks_2samp(a, b)
        return float(test.statistic), float(test.pvalue)
    a, b = np.sort(a), np.sort(b)
    diffs = np.concatenate([_cdf_gaps(a, b, n1, n2), -_cdf_gaps(b, a, n2, n1)])
    low, high = np.clip(-diffs.min(), 0, 1), diffs.max()
    d = float(low if low > high else high)
    m, n = sorted([float(n1), float(n2)], reverse=True)
    return d, float(np.clip(_kstwo_sf(d, int(np.round(m * n / (m + n)))), 0, 1))


def _cdf_gaps(own: np.ndarray, other: np.ndarray, n_own: int, n_other: int) -> np.ndarray:
    """``own``'s CDF minus ``other``'s at each distinct value of ``own`` (both sorted)."""
    ends = np.flatnonzero(np.append(own[1:] != own[:-1], True)) + 1  # a run of equal values ends here
    return ends / n_own - np.searchsorted(other, own[ends - 1], side="right") / n_other


def _kstwo_sf(d: float, n: int) -> float:
    """``scipy.stats.kstwo.sf(d, n)``: P(D_n >= d), by Simard and L'Ecuyer's choice of method as SciPy's
    ``_kolmogn`` makes it (``x`` a 0-d array, as SciPy's loop hands it over); the branches not written
    here (Ruben-Gambino's for d <= 1/n, n <= 140, Durbin's matrix for a small n * d^1.5) are SciPy's."""
    from scipy.special import smirnov

    x = np.asarray(d, dtype=np.float64)
    if x <= 0.5 / n:  # below the support
        return 1.0
    if x >= 1.0:
        return 0.0
    t = n * x
    if t > 1.0:
        if t >= n - 1:
            return float(2 * (1.0 - x) ** n)
        if x >= 0.5:
            return float(2 * smirnov(n, x))
        nxsquared = t * x
        if n > 140:
            if nxsquared >= 370.0:
                return 0.0
            if nxsquared >= 2.2:
                return float(2 * smirnov(n, x))
            if not (n <= 100000 and n * x**1.5 <= 1.4):
                return float(1.0 - _pelz_good_cdf(n, x))
    from scipy.stats import kstwo

    return float(kstwo.sf(d, n))


def _pelz_good_cdf(n: int, x: np.ndarray) -> float:
    """Pelz and Good's approximation of P(D_n <= x) (SciPy's ``_kolmogn_PelzGood``, cdf=True)."""
    z = np.sqrt(n) * x
    zsquared, zthree, zfour, zsix = z**2, z**3, z**4, z**6
    qlog = -_PI_SQUARED / 8 / zsquared
    if qlog < _MIN_LOG:
        return 0.0
    q = np.exp(qlog)
    k1a = -zsquared
    k1b = _PI_SQUARED / 4
    k2a = 6 * zsix + 2 * zfour
    k2b = (2 * zfour - 5 * zsquared) * _PI_SQUARED / 4
    k2c = _PI_FOUR * (1 - 2 * zsquared) / 16
    k3d = _PI_SIX * (5 - 30 * zsquared) / 64
    k3c = _PI_FOUR * (-60 * zsquared + 212 * zfour) / 16
    k3b = _PI_SQUARED * (135 * zfour - 96 * zsix) / 4
    k3a = -30 * zsix - 90 * z**8
    k0to3 = np.zeros(4)
    maxk = int(np.ceil(16 * z / np.pi))
    for k in range(maxk, 0, -1):  # Horner's scheme over the odd terms
        m = 2 * k - 1
        msquared, mfour, msix = m**2, m**4, m**6
        qpower = np.power(q, 8 * k)
        coeffs = np.array([1.0, k1a + k1b * msquared, k2a + k2b * msquared + k2c * mfour,
                           k3a + k3b * msquared + k3c * mfour + k3d * msix])
        k0to3 *= qpower
        k0to3 += coeffs
    k0to3 *= q
    k0to3 *= _SQRT2PI
    k0to3 /= np.array([z, 6 * zfour, 72 * z**7, 6480 * z**10])
    q = np.exp(-_PI_SQUARED / 2 / zsquared)
    ks = np.arange(maxk, 0, -1)
    ksquared = ks ** 2
    sqrt3z = _SQRT3 * z
    kspi = np.pi * ks
    qpwers = q ** ksquared
    k2extra = np.sum(ksquared * qpwers)
    k2extra *= _PI_SQUARED * _SQRT2PI / (-36 * zthree)
    k0to3[2] += k2extra
    k3extra = np.sum((sqrt3z + kspi) * (sqrt3z - kspi) * ksquared * qpwers)
    k3extra *= _PI_SQUARED * _SQRT2PI / (216 * zsix)
    k0to3[3] += k3extra
    k0to3 /= np.power(n * 1.0, np.arange(len(k0to3)) / 2.0)
    return float(sum(k0to3))


def chi2_contingency_pvalue(table: np.ndarray) -> float:
    """``scipy.stats.chi2_contingency(table).pvalue`` of a 2 x k table of counts (k >= 2) whose rows and
    columns all have counts: Pearson's statistic, with Yates' correction when it has one degree of freedom."""
    from scipy.special import chdtrc

    observed = np.asarray(table)
    counts = observed.astype(np.float64)
    expected = counts.sum(axis=1, keepdims=True) * counts.sum(axis=0, keepdims=True) / counts.sum()
    dof = expected.size - sum(expected.shape) + expected.ndim - 1
    if dof == 1:  # Yates' correction, no larger than the difference
        diff = expected - observed
        observed = observed + np.minimum(0.5, np.abs(diff)) * np.sign(diff)
    observed = observed.astype(np.float64)
    stat = np.sum((observed - expected) ** 2 / expected, axis=None)
    return float(chdtrc(np.float64(dof), stat))
