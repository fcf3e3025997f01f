"""Strided convolutions of the VQ-VAE, written for speed (NHWC).

`DownConv`: 4x4 stride-2 convolution, padding 1 (H -> H/2), as torch Conv2d(4, 2, 1).
`UpConv`: 4x4 stride-2 transposed convolution, padding 1 (H -> 2H), as torch
ConvTranspose2d(4, 2, 1).
`Conv3x3`: 3x3 stride-1 convolution, padding 1, as nn.Conv(C, (3, 3), padding=1).

All keep a `kernel` [kh, kw, C_in, C_out] (Xavier-uniform) and a `bias` [C_out]
(zeros), and are the functions `reference_down` / `reference_up` /
`reference_conv3x3` below; the other formulations here compute the same
function (same sums, other order; tests/test_layers.py checks values and
gradients).

Why: XLA:CPU runs some convolutions (above all the kernel gradient of a strided
transposed convolution) through slow generic loops. The formulations below
only use pads, slices, reshapes/transposes and matrix products (`dot_general`),
whose forward and backward passes all map to XLA:CPU's fast matmul.

Which formulation a layer uses: its `impl` field, by default 'auto', a pure
function of jax.default_backend() (`auto_impls`: the rewrites on CPU, the
references on GPU/TPU) that a model may override per layer kind
(`overrides`, e.g. (('up', 'sub2_conv'),)) without changing any variable.
"""
from __future__ import annotations

from types import MappingProxyType
from typing import Any, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

_DN = ('NHWC', 'HWIO', 'NHWC')


# ----------------------------------------------------------------------------
# References (the definitions).
# ----------------------------------------------------------------------------
def reference_down(x, kernel, bias):
  """x: [B, H, W, Ci], kernel: [4, 4, Ci, Co] -> [B, H/2, W/2, Co]."""
  y = lax.conv_general_dilated(x, kernel, (2, 2), ((1, 1), (1, 1)), dimension_numbers=_DN)
  return y + bias


def reference_up(x, kernel, bias):
  """x: [B, H, W, Ci], kernel: [4, 4, Ci, Co] -> [B, 2H, 2W, Co]."""
  y = lax.conv_transpose(x, kernel, (2, 2), ((2, 2), (2, 2)), dimension_numbers=_DN)
  return y + bias


def reference_conv3x3(x, kernel, bias):
  """x: [B, H, W, Ci], kernel: [3, 3, Ci, Co] -> [B, H, W, Co] (padding 1)."""
  y = lax.conv_general_dilated(x, kernel, (1, 1), ((1, 1), (1, 1)), dimension_numbers=_DN)
  return y + bias


# ----------------------------------------------------------------------------
# Helpers.
# ----------------------------------------------------------------------------
def _matmul(a, w):
  """a: [..., K] @ w: [K, N] -> [..., N] as one 2-D dot."""
  lead = a.shape[:-1]
  y = lax.dot_general(a.reshape(-1, a.shape[-1]), w, (((1,), (0,)), ((), ())))
  return y.reshape(lead + (w.shape[-1],))


def _pad_hw(x, lo_h, hi_h, lo_w, hi_w):
  rest = ((0, 0),) * (x.ndim - 3)
  return jnp.pad(x, ((0, 0), (lo_h, hi_h), (lo_w, hi_w)) + rest)


def space_to_depth(x):
  """[B, 2h, 2w, C] -> [B, h, w, 4C], channel order (row phase, col phase, c)."""
  b, h, w, c = x.shape
  x = x.reshape(b, h // 2, 2, w // 2, 2, c)
  return x.transpose(0, 1, 3, 2, 4, 5).reshape(b, h // 2, w // 2, 4 * c)


def depth_to_space(x, c):
  """[B, h, w, 4C] with channel order (row phase, col phase, c) -> [B, 2h, 2w, C]."""
  b, h, w, _ = x.shape
  x = x.reshape(b, h, w, 2, 2, c)
  return x.transpose(0, 1, 3, 2, 4, 5).reshape(b, 2 * h, 2 * w, c)


# ----------------------------------------------------------------------------
# DownConv formulations: y[i] = sum_a xpad[2i + a] K[a], xpad = x padded by 1.
# Split a = 2p + r: y[i] = sum_{p, r} s2d(xpad)[i + p, r] K[2p + r], a 2x2
# stride-1 convolution of the space-to-depth input.
# ----------------------------------------------------------------------------
def _down_prepare(x):
  """Pads by 1 (plus one row/col for odd sizes) and applies space-to-depth.

  Returns (s [B, Ho + 1, Wo + 1, 4Ci], Ho, Wo)."""
  _, h, w, _ = x.shape
  ho, wo = (h - 2) // 2 + 1, (w - 2) // 2 + 1
  xp = _pad_hw(x, 1, 1 + (h % 2), 1, 1 + (w % 2))
  s = space_to_depth(xp)
  return s[:, :ho + 1, :wo + 1], ho, wo


def _down_kernel(kernel):
  """[4, 4, Ci, Co] -> [2, 2, 4Ci, Co], index (p, q, (r, s, c), o) = K[2p + r, 2q + s, c, o]."""
  _, _, ci, co = kernel.shape
  k = kernel.reshape(2, 2, 2, 2, ci, co)  # p r q s c o
  return k.transpose(0, 2, 1, 3, 4, 5).reshape(2, 2, 4 * ci, co)


def down_s2d_conv(x, kernel, bias):
  """Space-to-depth, then a 2x2 stride-1 VALID convolution (lax.conv)."""
  s, _, _ = _down_prepare(x)
  y = lax.conv_general_dilated(s, _down_kernel(kernel), (1, 1), 'VALID', dimension_numbers=_DN)
  return y + bias


def down_s2d_matmul(x, kernel, bias):
  """Space-to-depth, then the four 2x2 taps concatenated and one matmul."""
  s, ho, wo = _down_prepare(x)
  taps = [s[:, p:p + ho, q:q + wo] for p in (0, 1) for q in (0, 1)]
  patches = jnp.concatenate(taps, axis=-1)  # [B, Ho, Wo, (p, q, r, s, c)]
  k = _down_kernel(kernel).reshape(-1, kernel.shape[-1])
  return _matmul(patches, k) + bias


# ----------------------------------------------------------------------------
# UpConv formulations. reference_up computes (1-D, per axis)
#   y[o] = sum_a xd[o + a - 2] K[a],  xd = x dilated by 2,
# so y[2m + r] = sum_{p in 0,1} xpad[m + r + p] K[2p + r] with xpad = x padded
# by 1: each output phase r is a 2-tap stride-1 convolution ("sub-pixel").
# ----------------------------------------------------------------------------
def _up_phase_kernels(kernel):
  """[4, 4, Ci, Co] -> [2, 2, 2, 2, Ci, Co] indexed (r, s, p, q, c, o) = K[2p + r, 2q + s]."""
  _, _, ci, co = kernel.shape
  k = kernel.reshape(2, 2, 2, 2, ci, co)  # p r q s c o
  return k.transpose(1, 3, 0, 2, 4, 5)


def up_sub3_conv(x, kernel, bias):
  """One 3x3 stride-1 convolution with 4Co outputs (zeros where a phase has no
  tap), then depth-to-space. 2.25x the multiply-adds of the others."""
  _, _, ci, co = kernel.shape
  kp = _up_phase_kernels(kernel)  # r s p q c o
  k3 = jnp.zeros((3, 3, ci, 2, 2, co), kernel.dtype)
  for r in (0, 1):
    for s in (0, 1):
      k3 = k3.at[r:r + 2, s:s + 2, :, r, s, :].set(kp[r, s])
  k3 = k3.reshape(3, 3, ci, 4 * co)
  y = lax.conv_general_dilated(x, k3, (1, 1), ((1, 1), (1, 1)), dimension_numbers=_DN)
  return depth_to_space(y, co) + bias


def _up_sub2_kernel(kernel):
  """[4, 4, Ci, Co] -> [2, 2, Ci, 4Co]: (p, q, c, (r, s, o)) = K[2p + r, 2q + s, c, o]."""
  _, _, ci, co = kernel.shape
  k = kernel.reshape(2, 2, 2, 2, ci, co)  # p r q s c o
  return k.transpose(0, 2, 4, 1, 3, 5).reshape(2, 2, ci, 4 * co)


def _up_sub2_assemble(z, h, w, co):
  """z: [B, H + 1, W + 1, (r, s, o)] -> y[2m + r, 2n + s] = z[m + r, n + s, (r, s)]."""
  b = z.shape[0]
  z = z.reshape(b, h + 1, w + 1, 2, 2, co)
  rows = []
  for r in (0, 1):
    cols = [z[:, r:r + h, s:s + w, r, s] for s in (0, 1)]
    rows.append(jnp.stack(cols, axis=3))  # [B, H, W, 2(s), Co]
  y = jnp.stack(rows, axis=2)  # [B, H, 2(r), W, 2(s), Co]
  return y.reshape(b, 2 * h, 2 * w, co)


def up_sub2_conv(x, kernel, bias):
  """One 2x2 VALID convolution of the padded input with 4Co outputs, on an
  (H+1)x(W+1) grid; phase (r, s) is the window at offset (r, s)."""
  _, h, w, _ = x.shape
  co = kernel.shape[-1]
  xp = _pad_hw(x, 1, 1, 1, 1)
  z = lax.conv_general_dilated(xp, _up_sub2_kernel(kernel), (1, 1), 'VALID', dimension_numbers=_DN)
  return _up_sub2_assemble(z, h, w, co) + bias


def up_phase_conv(x, kernel, bias):
  """Four 2x2 VALID convolutions, one per output phase (r, s), each on the
  HxW grid it needs (exactly the reference's multiply-adds), interleaved."""
  _, h, w, _ = x.shape
  kp = _up_phase_kernels(kernel)  # r s p q c o
  xp = _pad_hw(x, 1, 1, 1, 1)
  rows = []
  for r in (0, 1):
    cols = [_conv_valid(xp[:, r:r + h + 1, s:s + w + 1], kp[r, s]) for s in (0, 1)]
    rows.append(jnp.stack(cols, axis=3))  # [B, H, W, 2(s), Co]
  y = jnp.stack(rows, axis=2)  # [B, H, 2(r), W, 2(s), Co]
  return y.reshape(x.shape[0], 2 * h, 2 * w, kernel.shape[-1]) + bias


def up_col2im(x, kernel, bias):
  """Matmul first (every input pixel times the whole 4x4 kernel, [Ci, 16Co]),
  then overlap-add of the 16 products per output phase. Cheapest when Co is
  small (the last decoder layer)."""
  b, h, w, ci = x.shape
  co = kernel.shape[-1]
  # c[i, j, a, bb, o] = sum_c x[i, j, c] K[a, bb, c, o]
  k = kernel.transpose(2, 0, 1, 3).reshape(ci, 16 * co)
  c = _matmul(x, k).reshape(b, h, w, 4, 4, co)
  cp = _pad_hw(c, 1, 1, 1, 1)  # cp[i + 1] = c[i]
  # 1-D: y[2m + r] = sum_p x[m + r + p - 1] K[2p + r] = sum_p c[m + r + p - 1, 2p + r]
  #                = sum_p cp[m + r + p, 2p + r].
  rows = []
  for r in (0, 1):
    cols = []
    for s in (0, 1):
      acc = None
      for p in (0, 1):
        for q in (0, 1):
          t = cp[:, r + p:r + p + h, s + q:s + q + w, 2 * p + r, 2 * q + s]
          acc = t if acc is None else acc + t
      cols.append(acc)
    rows.append(jnp.stack(cols, axis=3))
  y = jnp.stack(rows, axis=2)  # [B, H, 2, W, 2, Co]
  return y.reshape(b, 2 * h, 2 * w, co) + bias


# ----------------------------------------------------------------------------
# 3x3 stride-1 convolution.
# ----------------------------------------------------------------------------
def conv3x3_matmul(x, kernel, bias):
  """Patches (9 shifted copies concatenated) and one matmul."""
  _, h, w, ci = x.shape
  xp = _pad_hw(x, 1, 1, 1, 1)
  taps = [xp[:, a:a + h, bb:bb + w] for a in range(3) for bb in range(3)]
  patches = jnp.concatenate(taps, axis=-1)  # [B, H, W, (a, b, c)]
  return _matmul(patches, kernel.reshape(9 * ci, -1)) + bias


# ----------------------------------------------------------------------------
# Stride-1 VALID convolution whose kernel gradient is a sum of matmuls.
# XLA:CPU computes a convolution's kernel gradient as another convolution with
# batch and feature dimensions swapped, i.e. after transposing both
# activations (slow copies). Per kernel tap (a, b) it is instead
#   dk[a, b] = xp[:, a:a + Ho, b:b + Wo, :]^T . dy    ([Ci, N] @ [N, Co]),
# one matmul over the N = B * Ho * Wo rows with no transpose. The forward pass
# and the input gradient stay lax convolutions (Eigen's fast path).
# ----------------------------------------------------------------------------
def _conv_valid(xp, kernel):
  return lax.conv_general_dilated(xp, kernel, (1, 1), 'VALID', dimension_numbers=_DN)


def _conv_kernel_grad(xp, dy, kh, kw):
  _, ho, wo, ci = dy.shape[0], dy.shape[1], dy.shape[2], xp.shape[-1]
  dy2 = dy.reshape(-1, dy.shape[-1])
  taps = []
  for a in range(kh):
    for b in range(kw):
      t = xp[:, a:a + ho, b:b + wo].reshape(-1, ci)
      taps.append(lax.dot_general(t, dy2, (((0,), (0,)), ((), ()))))
  return jnp.stack(taps).reshape(kh, kw, ci, dy.shape[-1])


@jax.custom_vjp
def conv_valid(xp, kernel):
  """VALID stride-1 convolution, NHWC x HWIO; kernel gradient as matmuls."""
  return _conv_valid(xp, kernel)


def _conv_valid_fwd(xp, kernel):
  return _conv_valid(xp, kernel), (xp, kernel)


def _conv_valid_bwd(res, dy):
  xp, kernel = res
  _, vjp_x = jax.vjp(lambda v: _conv_valid(v, kernel), xp)
  (dxp,) = vjp_x(dy)
  dk = _conv_kernel_grad(xp, dy, kernel.shape[0], kernel.shape[1])
  return dxp, dk.astype(kernel.dtype)


conv_valid.defvjp(_conv_valid_fwd, _conv_valid_bwd)


def conv3x3_dotgrad(x, kernel, bias):
  """lax convolution forward and input gradient, matmul kernel gradient."""
  return conv_valid(_pad_hw(x, 1, 1, 1, 1), kernel) + bias


def down_s2d_dotgrad(x, kernel, bias):
  """down_s2d_conv with the matmul kernel gradient."""
  s, _, _ = _down_prepare(x)
  return conv_valid(s, _down_kernel(kernel)) + bias


def up_sub2_dotgrad(x, kernel, bias):
  """up_sub2_conv with the matmul kernel gradient."""
  _, h, w, _ = x.shape
  z = conv_valid(_pad_hw(x, 1, 1, 1, 1), _up_sub2_kernel(kernel))
  return _up_sub2_assemble(z, h, w, kernel.shape[-1]) + bias


def conv1x1(x, kernel, bias):
  """1x1 convolution as one matmul (kernel [1, 1, Ci, Co])."""
  return _matmul(x, kernel.reshape(kernel.shape[-2], kernel.shape[-1])) + bias


DOWN_IMPLS = {
    'reference': reference_down,
    's2d_conv': down_s2d_conv,
    's2d_matmul': down_s2d_matmul,
    's2d_dotgrad': down_s2d_dotgrad,
}
UP_IMPLS = {
    'reference': reference_up,
    'sub3_conv': up_sub3_conv,
    'sub2_conv': up_sub2_conv,
    'col2im': up_col2im,
    'phase_conv': up_phase_conv,
    'sub2_dotgrad': up_sub2_dotgrad,
}
CONV3X3_IMPLS = {
    'reference': reference_conv3x3,
    'matmul': conv3x3_matmul,
    'dotgrad': conv3x3_dotgrad,
}


# Formulations picked by impl='auto', by backend. A layer whose input
# (DownConv) or output (UpConv) has at most NARROW channels is an image-side
# layer and uses the '*_narrow' entry. CPU: the rewrites measured fastest on
# XLA:CPU (benchmarks/README.md). GPU/TPU: the plain lax convolutions, since
# nothing was measured there. Callers override entries per module (the
# `overrides` field below, `models.VQVAE.impls`), never by editing these.
NARROW = 16
CPU_IMPLS = MappingProxyType({'down': 's2d_conv', 'down_narrow': 's2d_conv', 'up': 'phase_conv',
                              'up_narrow': 'col2im', 'conv3x3': 'reference'})
ACCELERATOR_IMPLS = MappingProxyType({kind: 'reference' for kind in CPU_IMPLS})
KINDS = tuple(CPU_IMPLS)
_TABLES = MappingProxyType({'down': DOWN_IMPLS, 'up': UP_IMPLS, 'conv3x3': CONV3X3_IMPLS})


def auto_impls(backend: Optional[str] = None) -> dict:
  """Formulation names impl='auto' uses on `backend` (default
  jax.default_backend()): {kind: name} for every kind in KINDS; CPU_IMPLS on
  'cpu', ACCELERATOR_IMPLS on anything else."""
  backend = jax.default_backend() if backend is None else backend
  return dict(CPU_IMPLS if backend == 'cpu' else ACCELERATOR_IMPLS)


def check_impls(impls) -> tuple:
  """Validates per-kind overrides (a dict or (kind, name) pairs, e.g.
  {'up': 'sub2_conv'}) and returns them as sorted pairs, a hashable value
  for module fields. Raises ValueError for an unknown kind or name."""
  pairs = tuple(sorted(dict(impls).items()))
  for kind, name in pairs:
    if kind not in KINDS:
      raise ValueError(f'unknown layer kind {kind!r}; one of {list(KINDS)}')
    table = _TABLES[kind.replace('_narrow', '')]
    if name not in table:
      raise ValueError(f'unknown {kind} formulation {name!r}; one of {sorted(table)}')
  return pairs


def effective_impls(impls=(), backend: Optional[str] = None) -> dict:
  """{kind: name} that impl='auto' layers with these overrides use on `backend`."""
  return {**auto_impls(backend), **dict(check_impls(impls))}


def choose(kind: str, narrow: bool = False, impl: str = 'auto', overrides=(),
           backend: Optional[str] = None):
  """The function (x, kernel, bias) -> y for a layer of `kind` ('down', 'up'
  or 'conv3x3'): `impl` by name, or for impl='auto' the entry of
  effective_impls(overrides, backend) for kind (+ '_narrow' if narrow)."""
  table = _TABLES[kind]
  if impl == 'auto':
    key = kind + ('_narrow' if narrow and kind + '_narrow' in KINDS else '')
    impl = effective_impls(overrides, backend)[key]
  if impl not in table:
    raise ValueError(f'unknown {kind} formulation {impl!r}; one of {sorted(table)}')
  return table[impl]


def _kernel_and_bias(module, size, x, features):
  """The module's Xavier-uniform kernel [size, size, Ci, Co] and zero bias [Co]
  (float32, as nn.Conv's), cast to the input's dtype."""
  kernel = module.param('kernel', nn.initializers.xavier_uniform(),
                        (size, size, x.shape[-1], features), jnp.float32)
  bias = module.param('bias', nn.initializers.zeros, (features,), jnp.float32)
  return kernel.astype(x.dtype), bias.astype(x.dtype)


class DownConv(nn.Module):
  """4x4 stride-2 convolution, padding 1: [B, H, W, Ci] -> [B, H/2, W/2, features].

  impl: a DOWN_IMPLS name, or 'auto' (see `choose`); overrides: (kind, name)
  pairs replacing entries of the auto table (see `check_impls`). Neither
  changes the variables: kernel [4, 4, Ci, features], bias [features]."""
  features: int
  impl: str = 'auto'
  overrides: tuple = ()

  @nn.compact
  def __call__(self, x):
    f = choose('down', x.shape[-1] <= NARROW, self.impl, self.overrides)
    return f(x, *_kernel_and_bias(self, 4, x, self.features))


class UpConv(nn.Module):
  """4x4 stride-2 transposed convolution, padding 1: [B, H, W, Ci] -> [B, 2H, 2W, features].

  impl and overrides as in DownConv (UP_IMPLS names)."""
  features: int
  impl: str = 'auto'
  overrides: tuple = ()

  @nn.compact
  def __call__(self, x):
    f = choose('up', self.features <= NARROW, self.impl, self.overrides)
    return f(x, *_kernel_and_bias(self, 4, x, self.features))


class Conv3x3(nn.Module):
  """3x3 stride-1 convolution, padding 1 (nn.Conv(features, (3, 3), padding=1)).

  impl and overrides as in DownConv (CONV3X3_IMPLS names)."""
  features: int
  impl: str = 'auto'
  overrides: tuple = ()

  @nn.compact
  def __call__(self, x):
    f = choose('conv3x3', False, self.impl, self.overrides)
    return f(x, *_kernel_and_bias(self, 3, x, self.features))


class Conv1x1(nn.Module):
  """1x1 convolution as one matmul (nn.Conv(features, (1, 1)): same variables)."""
  features: int

  @nn.compact
  def __call__(self, x):
    return conv1x1(x, *_kernel_and_bias(self, 1, x, self.features))


# ----------------------------------------------------------------------------
# BatchNorm with its reductions as matrix products.
# ----------------------------------------------------------------------------
def _col_sum(a):
  """a [N, C] -> [C]: sum over rows as ones[N] @ a (XLA:CPU's reductions over
  leading dimensions are slow; the dot is not, and neither is its transpose)."""
  ones = jnp.ones((a.shape[0],), a.dtype)
  return lax.dot_general(ones, a, (((0,), (0,)), ((), ())))


def _rows(v, n):
  """v [C] -> [N, C] every row v, as ones[N, 1] @ v[1, C]: the gradient
  w.r.t. v (a sum over rows) is then a dot as well."""
  ones = jnp.ones((n, 1), v.dtype)
  return lax.dot_general(ones, v[None, :], (((1,), (0,)), ((), ())))


def batch_norm_train(x, scale, bias, epsilon=1e-5, axis_name=None):
  """Training-mode batch norm over all axes but the last, as flax's
  nn.BatchNorm(use_fast_variance=True): var = E[x^2] - E[x]^2 (clipped at 0),
  statistics in float32 and averaged over `axis_name` (pmean) if given.

  Returns (y like x, batch mean [C], batch var [C]).
  """
  c = x.shape[-1]
  f32 = jnp.promote_types(x.dtype, jnp.float32)
  x2 = x.reshape(-1, c).astype(f32)
  n = x2.shape[0]
  mean = _col_sum(x2) / n
  mean2 = _col_sum(x2 * x2) / n
  if axis_name is not None:  # None while initialising (no named axis then)
    mean, mean2 = lax.pmean((mean, mean2), axis_name)
  var = jnp.maximum(mean2 - mean * mean, 0.0)
  a = scale.astype(f32) * lax.rsqrt(var + epsilon)
  b = bias.astype(f32) - mean * a
  y = x2 * _rows(a, n) + _rows(b, n)
  return y.reshape(x.shape).astype(x.dtype), mean, var


class BatchNorm(nn.Module):
  """Drop-in for the nn.BatchNorm(axis=-1, use_fast_variance=True) the model
  uses: same variables (params scale/bias, batch_stats mean/var), same
  function; training-mode statistics computed by `batch_norm_train`."""
  use_running_average: Optional[bool] = None
  momentum: float = 0.99
  epsilon: float = 1e-5
  axis_name: Optional[str] = None
  dtype: Any = None

  @nn.compact
  def __call__(self, x, use_running_average: Optional[bool] = None):
    use_ra = nn.merge_param('use_running_average', self.use_running_average, use_running_average)
    c = x.shape[-1]
    ra_mean = self.variable('batch_stats', 'mean', lambda: jnp.zeros((c,), jnp.float32))
    ra_var = self.variable('batch_stats', 'var', lambda: jnp.ones((c,), jnp.float32))
    scale = self.param('scale', nn.initializers.ones, (c,), jnp.float32)
    bias = self.param('bias', nn.initializers.zeros, (c,), jnp.float32)
    dtype = self.dtype or jnp.result_type(x, scale)
    if use_ra:
      f32 = jnp.promote_types(x.dtype, jnp.float32)
      a = scale.astype(f32) * lax.rsqrt(ra_var.value.astype(f32) + self.epsilon)
      b = bias.astype(f32) - ra_mean.value.astype(f32) * a
      return (x.astype(f32) * a + b).astype(dtype)
    axis_name = None if self.is_initializing() else self.axis_name
    y, mean, var = batch_norm_train(x.astype(dtype), scale, bias, self.epsilon, axis_name)
    if not self.is_initializing():
      ra_mean.value = self.momentum * ra_mean.value + (1.0 - self.momentum) * mean
      ra_var.value = self.momentum * ra_var.value + (1.0 - self.momentum) * var
    return y
