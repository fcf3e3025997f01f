"""benchmarks/rd_metrics.py against independent float64 NumPy computations."""
import numpy as np
import pytest

from benchmarks import rd_metrics

# A convex-looking RD curve: PSNR 24..41 dB, rates 0.3..4 bpp.
PSNR = np.array([24.0, 28.5, 33.0, 37.0, 41.0])
RATE = np.array([0.3, 0.7, 1.4, 2.4, 4.0])


def _trapezoid_bd(rate_a, psnr_a, rate_b, psnr_b, n=200001):
  """BD-rate by brute force: np.polyfit cubics of log rate, sampled on a fine
  grid of the common PSNR interval and integrated by the trapezoid rule."""
  lo, hi = max(psnr_a.min(), psnr_b.min()), min(psnr_a.max(), psnr_b.max())
  x = np.linspace(lo, hi, n)
  fa = np.polyval(np.polyfit(psnr_a, np.log(rate_a), 3), x)
  fb = np.polyval(np.polyfit(psnr_b, np.log(rate_b), 3), x)
  d = fb - fa
  mean = np.sum((d[1:] + d[:-1]) / 2 * np.diff(x)) / (hi - lo)
  return 100.0 * (np.exp(mean) - 1.0)


@pytest.mark.parametrize('method', ['cubic', 'pchip'])
def test_scaled_rates_give_exactly_that_change(method):
  assert rd_metrics.bd_rate(RATE, PSNR, 0.8 * RATE, PSNR, method) == pytest.approx(-20.0, abs=1e-6)
  assert rd_metrics.bd_rate(RATE, PSNR, 1.5 * RATE, PSNR, method) == pytest.approx(50.0, abs=1e-6)
  assert rd_metrics.bd_rate(RATE, PSNR, RATE, PSNR, method) == pytest.approx(0.0, abs=1e-9)


def test_shifted_curve_matches_numerical_integration():
  # b: other points, 1.7 dB better at the same rates, and an extra noisy point,
  # so the cubic is a real least-squares fit, not an interpolation.
  psnr_b = np.append(PSNR + 1.7, 43.3)
  rate_b = np.append(RATE * np.array([1.0, 1.05, 0.97, 1.02, 1.0]), 5.1)
  want = _trapezoid_bd(RATE, PSNR, rate_b, psnr_b)
  got = rd_metrics.bd_rate(RATE, PSNR, rate_b, psnr_b)
  assert want < -5  # the case is not trivial
  assert got == pytest.approx(want, abs=1e-6)
  # Swapping anchor and test inverts the mean log difference.
  back = rd_metrics.bd_rate(rate_b, psnr_b, RATE, PSNR)
  assert np.log1p(back / 100) == pytest.approx(-np.log1p(got / 100), abs=1e-9)


def test_pchip_is_the_piecewise_hermite_integral():
  # On points of a straight line (log rate linear in PSNR) the PCHIP is that
  # line, so the result is the closed form: the mean gap of two lines.
  psnr_b = PSNR + 2.0
  rate_a, rate_b = np.exp(0.2 * PSNR - 6), np.exp(0.2 * psnr_b - 6.3)
  lo, hi = psnr_b.min(), PSNR.max()
  x = np.linspace(lo, hi, 11)
  want = 100 * (np.exp(np.mean((0.2 * x - 6.3) - (0.2 * x - 6))) - 1)
  got = rd_metrics.bd_rate(rate_a, PSNR, rate_b, psnr_b, 'pchip')
  assert got == pytest.approx(want, abs=1e-9)


def test_undefined_cases_are_none():
  assert rd_metrics.bd_rate(RATE, PSNR, RATE, PSNR + 20) is None  # disjoint ranges
  assert 'do not overlap' in rd_metrics.bd_rate_reason(RATE, PSNR, RATE, PSNR + 20)
  assert rd_metrics.bd_rate(RATE, PSNR, RATE[:3], PSNR[:3]) is None  # 3 points
  assert 'at least 4' in rd_metrics.bd_rate_reason(RATE, PSNR, RATE[:3], PSNR[:3])
  # 4 points but only 3 distinct PSNRs cannot define a cubic.
  assert rd_metrics.bd_rate(RATE, PSNR, [1, 2, 3, 4], [30, 31, 31, 32]) is None
  assert rd_metrics.bd_rate_reason(RATE, PSNR, RATE, PSNR) is None
  with pytest.raises(ValueError):
    rd_metrics.bd_rate(RATE, PSNR, RATE, PSNR, 'linear')
  with pytest.raises(ValueError):
    rd_metrics.bd_rate(-RATE, PSNR, RATE, PSNR)


def _dominated_brute_force(r, p):
  n = len(r)
  return np.array([any((r[j] <= r[i] and p[j] >= p[i] and (r[j] < r[i] or p[j] > p[i]))
                       for j in range(n)) for i in range(n)])


@pytest.mark.parametrize('seed', range(5))
def test_pareto_front_against_brute_force(seed):
  rng = np.random.default_rng(seed)
  n = 60
  # Rounded values make ties in rate, in PSNR and exact duplicates common.
  r = np.round(rng.uniform(0.1, 3.0, n), 1)
  p = np.round(20 + 8 * np.log(r) + rng.normal(0, 2, n))
  front = rd_metrics.pareto_front(r, p)
  dominated = _dominated_brute_force(r, p)
  kept = set(front.tolist())
  # Every non-dominated point is on the front once (duplicates: one of them).
  want = {(r[i], p[i]) for i in range(n) if not dominated[i]}
  assert {(r[i], p[i]) for i in kept} == want
  assert len(kept) == len(want) == len(front)
  assert not dominated[front].any()
  assert np.all(np.diff(r[front]) > 0) and np.all(np.diff(p[front]) > 0)


def test_rate_at_reads_the_front():
  r = np.append(RATE, [1.0, 3.0])       # two dominated points are ignored
  p = np.append(PSNR, [26.0, 35.0])
  assert rd_metrics.rate_at(r, p, 33.0) == pytest.approx(1.4)
  mid = rd_metrics.rate_at(r, p, 35.0)  # halfway in PSNR: geometric mean of rates
  assert mid == pytest.approx(np.sqrt(1.4 * 2.4))
  assert rd_metrics.rate_at(r, p, 10.0) == pytest.approx(0.3)
  assert rd_metrics.rate_at(r, p, 41.5) is None


@pytest.mark.parametrize('method', ['cubic', 'pchip'])
def test_point_order_does_not_matter(method):
  psnr_b, rate_b = PSNR + 1.0, RATE * np.array([0.9, 1.1, 0.95, 1.0, 1.05])
  want = rd_metrics.bd_rate(RATE, PSNR, rate_b, psnr_b, method)
  perm = np.random.default_rng(0).permutation(len(PSNR))
  got = rd_metrics.bd_rate(RATE[perm], PSNR[perm], rate_b[perm[::-1]], psnr_b[perm[::-1]],
                           method)
  assert got == pytest.approx(want, abs=1e-9)


def test_pchip_merges_equal_psnrs():
  # A repeated PSNR counts once, at the geometric mean of its rates.
  r, p = np.append(RATE, 1.4 * 4.0), np.append(PSNR, 33.0)
  merged = RATE.copy()
  merged[2] = 1.4 * 2.0
  assert (rd_metrics.bd_rate(RATE, PSNR, r, p, 'pchip') ==
          pytest.approx(rd_metrics.bd_rate(RATE, PSNR, merged, PSNR, 'pchip'), abs=1e-9))
