"""CCE's value and closed-form gradient in one compiled pass per row (CPU, float32).

The fused MF step needs ``d loss / d scores`` of sampled softmax over [B, 1 + K] scores
every step. As torch ops that is a max, a subtraction, an exp, a sum, a division and the
value's log and mean, six passes over [B, 1 + K] with temporaries (~0.45 ms per 1,024 x
101 step on this machine, 9% of a K = 100 ML-1M epoch). One compiled pass per row keeps
the row in cache. numba's ``np.exp`` is a scalar libm call that does not vectorise, so the
exponential here is Cephes' ``expf`` (Moshier, Cephes Math Library): Cody-Waite reduction
``x = n ln 2 + r``, a degree-7 polynomial in ``r`` and ``2^n`` built from its exponent
bits, about 1 ulp in float32; with it the pass is ~2.5x faster than the torch ops.
"""

from __future__ import annotations

import numpy as np
from numba import njit

#: LLVM fast-math flags without ``nnan`` / ``ninf``: masked negatives are -inf, and a
#: diverged step's NaN scores must give a NaN value (the fused step checks it)
_FASTMATH = {"nsz", "arcp", "contract", "afn", "reassoc"}

_LOG2E = 1.4426950408889634
_LN2_HI = 0.693359375  # ln 2 split so that n * _LN2_HI is exact for |n| < 2^9
_LN2_LO = -2.12194440e-4
#: exp(x) for x below this is < 2^-125 and counts as 0 (against a row total >= 1)
_EXP_FLOOR = -87.0


@njit(cache=True, nogil=True, fastmath=_FASTMATH, error_model="numpy")
def cce_rows_grad(
    logits: np.ndarray,  # float32 [B, W]: column 0 the positive's score, the rest the
    # negatives' logits (-inf: masked); may be the same array as ``grad``
    grad: np.ndarray,  # float32 [B, W] out: (softmax(logits) - onehot(0)) / B
    bits: np.ndarray,  # int32 [W] scratch
) -> float:
    """Writes CCE's gradient with respect to ``logits`` into ``grad`` and returns the batch
    mean of ``logsumexp(logits[b]) - logits[b, 0]`` (accumulated in float64)."""
    n_rows, width = logits.shape
    f = np.float32
    inv_rows = f(1.0 / n_rows)
    two_to_n = bits.view(np.float32)  # [W]: 2^n from its exponent bits (0 bits: 0.0)
    total_loss = 0.0
    finite = True  # no NaN in any row (a NaN or +inf score): else the value is NaN
    for b in range(n_rows):
        row = logits[b]
        out = grad[b]
        positive = row[0]
        top = positive
        for w in range(1, width):
            top = max(top, row[w])
        for w in range(width):  # out = exp(row - top) as poly(r) * 2^n
            x = row[w] - top
            clamped = max(x, f(_EXP_FLOOR))
            n = np.floor(clamped * f(_LOG2E) + f(0.5))
            r = clamped - n * f(_LN2_HI) - n * f(_LN2_LO)
            p = f(1.9875691500e-4)
            p = p * r + f(1.3981999507e-3)
            p = p * r + f(8.3334519073e-3)
            p = p * r + f(4.1665795894e-2)
            p = p * r + f(1.6666665459e-1)
            p = p * r + f(5.0000001201e-1)
            out[w] = p * r * r + r + f(1.0)
            bits[w] = (np.int32(n) + 127) << 23 if x > f(_EXP_FLOOR) else 0
            finite &= x == x
        total = f(0.0)
        for w in range(width):
            mass = out[w] * two_to_n[w]
            out[w] = mass
            total += mass
        scale = inv_rows / total
        for w in range(width):
            out[w] *= scale
        out[0] -= inv_rows
        total_loss += np.log(total) + top - positive
    return total_loss / n_rows if finite else np.nan
