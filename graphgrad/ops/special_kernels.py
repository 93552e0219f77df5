"""NumPy helpers for special functions that NumPy lacks: the error function of the exact GELU.

This module's source is pasted into generated modules, so it imports numpy only.
"""
import numpy as np


def erf(x):
    """The error function, accurate to float64 rounding (about 1e-15), in x's dtype; ±1 at ±inf.

    Below |x| = 2.5 a power series whose terms are all positive (no cancellation):
    erf(z) = 2/√π · e^(−z²) · Σ_n z (2z²)^n / (1·3·…·(2n+1)), 40 terms.  Above, 1 − erfc(z) with
    erfc(z) = e^(−z²) / √π / (z + (1/2) / (z + 1 / (z + (3/2) / (z + …)))), 40 levels."""
    z = np.abs(np.asarray(x, dtype=np.float64))
    out = np.empty_like(z)
    near = z < 2.5
    s = z[near]
    term, total, twice_square = s.copy(), s.copy(), 2.0 * s * s
    for n in range(1, 40):
        term *= twice_square / (2 * n + 1)
        total += term
    out[near] = total * np.exp(-s * s) * (2.0 / np.sqrt(np.pi))
    far = ~near
    t = np.where(np.isnan(z[far]), np.nan, np.minimum(z[far], 30.0))  # erfc(30) underflows: erf is 1 there
    fraction = t.copy()
    for k in range(40, 0, -1):
        fraction = t + (k / 2) / fraction
    out[far] = 1.0 - np.exp(-t * t) / (np.sqrt(np.pi) * fraction)
    return np.copysign(out, x).astype(np.result_type(x, np.float32), copy=False)
