"""Rate-distortion curve arithmetic: Pareto fronts, rate at a PSNR, BD-rate.

A curve is two equal-length sequences, rates (bits per pixel, > 0) and PSNRs
(dB), one entry per operating point. Nothing here knows about codecs or files.

BD-rate is the Bjøntegaard delta rate (G. Bjøntegaard, "Calculation of average
PSNR differences between RD-curves", ITU-T VCEG-M33, 2001): the average
difference of log(rate) between two curves over the PSNR interval both cover,
as a percentage rate change. Each curve's log(rate) is fitted as a function of
PSNR, by a least-squares cubic polynomial ('cubic', the original method) or by
piecewise cubic Hermite interpolation ('pchip', the later VCEG / JVET variant,
which follows curves with many points better); the fits are integrated exactly.

    >>> round(bd_rate([1, 2, 4, 8], [30, 33, 36, 39], [.8, 1.6, 3.2, 6.4], [30, 33, 36, 39]), 6)
    -20.0

Negative: the second (test) curve needs that many percent fewer bits than the
first (anchor) at equal PSNR.
"""
from __future__ import annotations

import numpy as np

MIN_POINTS = 4  # a cubic needs 4 points; fewer cannot define the standard fit


def _curve(rates, psnrs) -> tuple[np.ndarray, np.ndarray]:
  """float64 [N] rates and PSNRs; ValueError on bad shapes or non-positive rates."""
  r = np.asarray(rates, np.float64).reshape(-1)
  p = np.asarray(psnrs, np.float64).reshape(-1)
  if r.shape != p.shape:
    raise ValueError(f'{r.size} rates but {p.size} PSNRs')
  if not (np.all(np.isfinite(r)) and np.all(np.isfinite(p))):
    raise ValueError('rates and PSNRs must be finite')
  if np.any(r <= 0):
    raise ValueError('rates must be positive (their logarithm is fitted)')
  return r, p


def pareto_front(rates, psnrs) -> np.ndarray:
  """Indices [M] of the points no other point dominates, by increasing rate.

  Point j dominates i when rate_j <= rate_i and psnr_j >= psnr_i with one of
  them strict. Of exact duplicates the first is kept. Along the front the
  rate and the PSNR both increase strictly.
  """
  r, p = _curve(rates, psnrs)
  order = np.lexsort((-p, r))  # by rate, ties: highest PSNR first
  front, best = [], -np.inf
  for i in order:
    if p[i] > best:
      front.append(int(i))
      best = p[i]
  return np.array(front, dtype=np.int64)


def overlap(psnr_a, psnr_b) -> tuple[float, float] | None:
  """The PSNR interval [lo, hi] both curves cover; None if it is empty or a point."""
  lo = max(float(np.min(psnr_a)), float(np.min(psnr_b)))
  hi = min(float(np.max(psnr_a)), float(np.max(psnr_b)))
  return (lo, hi) if lo < hi else None


def _integral_cubic(log_r, p, lo, hi) -> float:
  """Integral over [lo, hi] of the least-squares cubic log_r(p)."""
  fit = np.polynomial.Polynomial.fit(p, log_r, 3)
  antiderivative = fit.integ()
  return float(antiderivative(hi) - antiderivative(lo))


def _integral_pchip(log_r, p, lo, hi) -> float:
  """Integral over [lo, hi] of the monotone piecewise cubic through the points
  (duplicated PSNRs merged: their mean log rate)."""
  from scipy.interpolate import PchipInterpolator  # pylint: disable=g-import-not-at-top
  x, inverse = np.unique(p, return_inverse=True)
  y = np.bincount(inverse, weights=log_r) / np.bincount(inverse)
  return float(PchipInterpolator(x, y).integrate(lo, hi))


_INTEGRALS = {'cubic': _integral_cubic, 'pchip': _integral_pchip}


def bd_rate_reason(rate_a, psnr_a, rate_b, psnr_b, names=('anchor', 'test')) -> str | None:
  """Why `bd_rate` of these curves is None, or None when it is defined;
  `names` of the two curves for the message."""
  for name, (r, p) in zip(names, (_curve(rate_a, psnr_a), _curve(rate_b, psnr_b))):
    if len(np.unique(p)) < MIN_POINTS:
      return (f'the {name} curve has {len(np.unique(p))} distinct PSNR values; BD-rate '
              f'needs at least {MIN_POINTS}')
  if overlap(psnr_a, psnr_b) is None:
    return (f'the PSNR ranges do not overlap: {names[0]} '
            f'{np.min(psnr_a):.2f}-{np.max(psnr_a):.2f} dB, {names[1]} '
            f'{np.min(psnr_b):.2f}-{np.max(psnr_b):.2f} dB')
  return None


def bd_rate(rate_a, psnr_a, rate_b, psnr_b, method: str = 'cubic') -> float | None:
  """Bjøntegaard delta rate of curve b (test) against curve a (anchor), in %.

  Args:
    rate_a, psnr_a: the anchor's rates (> 0, any unit) and PSNRs [Na].
    rate_b, psnr_b: the test curve, same unit [Nb].
    method: 'cubic' (least-squares cubic of log rate in PSNR) or 'pchip'.
  Returns:
    100 * (exp(mean over the common PSNR interval of log r_b - log r_a) - 1):
    -20.0 means b needs 20% fewer bits at equal PSNR. None when a curve has
    fewer than MIN_POINTS distinct PSNRs or the PSNR ranges do not overlap
    (`bd_rate_reason` says which).
  """
  if method not in _INTEGRALS:
    raise ValueError(f'method must be one of {", ".join(_INTEGRALS)}, got {method!r}')
  ra, pa = _curve(rate_a, psnr_a)
  rb, pb = _curve(rate_b, psnr_b)
  if bd_rate_reason(ra, pa, rb, pb) is not None:
    return None
  lo, hi = overlap(pa, pb)
  integral = _INTEGRALS[method]
  mean_diff = (integral(np.log(rb), pb, lo, hi) - integral(np.log(ra), pa, lo, hi)) / (hi - lo)
  return float(100.0 * np.expm1(mean_diff))


def rate_at(rates, psnrs, psnr: float) -> float | None:
  """The rate a curve needs for `psnr` dB, read off its Pareto front.

  Between two front points: log rate interpolated linearly in PSNR. At or
  below the front's lowest PSNR: its lowest rate (the cheapest point already
  reaches `psnr`). None above its highest PSNR (never reached).
  """
  r, p = _curve(rates, psnrs)
  front = pareto_front(r, p)
  fr, fp = r[front], p[front]
  if psnr > fp[-1]:
    return None
  if psnr <= fp[0]:
    return float(fr[0])
  return float(np.exp(np.interp(psnr, fp, np.log(fr))))
