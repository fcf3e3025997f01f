"""Strided convolutions of the VQ-VAE, written for speed (NHWC), and its BatchNorm.

`DownConv`: 4x4 stride-2 convolution, padding 1 (H -> H/2), as torch Conv2d(4, 2, 1).
`UpConv`: 4x4 stride-2 transposed convolution, padding 1 (H -> 2H), as torch
ConvTranspose2d(4, 2, 1).
`Conv3x3`: 3x3 stride-1 convolution, padding 1, as nn.Conv(C, (3, 3), padding=1).

All keep a `kernel` [kh, kw, C_in, C_out] (Xavier-uniform) and a `bias` [C_out]
(zeros), and compute the functions `formulations.reference_down` /
`reference_up` / `reference_conv3x3`, each through one of the formulations of
`vqvae_jax.models.formulations` (same function, other order of the sums).

Why: XLA:CPU runs some convolutions (above all the kernel gradient of a strided
transposed convolution) through slow generic loops; the formulations picked on
CPU use matrix products instead.

Which formulation a layer uses: its `impl` field, by default 'auto', a pure
function of jax.default_backend() and the compute dtype (`auto_impls`: the
rewrites on CPU, bfloat16 matmuls on CPU in bfloat16, the references on
GPU/TPU) that a model may override per layer kind
(`overrides`, e.g. (('up', 'sub2_conv'),)) without changing any variable.
"""
from __future__ import annotations

from types import MappingProxyType
from typing import Any, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from vqvae_jax.models.formulations import CONV1X1_IMPLS, CONV3X3_IMPLS, DOWN_IMPLS, UP_IMPLS

# Formulations picked by impl='auto', by backend and compute dtype. A layer
# whose input (DownConv) or output (UpConv) has at most NARROW channels is an
# image-side layer and uses the '*_narrow' entry. CPU, float32: the rewrites
# measured fastest on XLA:CPU (benchmarks/README.md). CPU, bfloat16: the
# matmul formulations whose dots XLA hands to YNNPACK's bfloat16 kernels (AMX
# / AVX512-BF16 where the CPU has them; XLA:CPU widens bfloat16 convolutions
# to float32). GPU/TPU: the plain lax convolutions, since nothing was measured
# there. Callers override entries per module (the `overrides` field below,
# `models.VQVAE.impls`), never by editing these.
NARROW = 16
CPU_IMPLS = MappingProxyType({'down': 's2d_conv', 'down_narrow': 's2d_conv', 'up': 'phase_conv',
                              'up_narrow': 'col2im', 'conv3x3': 'reference',
                              'conv1x1': 'reference'})
CPU_BF16_IMPLS = MappingProxyType({'down': 's2d_bf16', 'down_narrow': 's2d_bf16',
                                   'up': 'sub2_bf16', 'up_narrow': 'col2im',
                                   'conv3x3': 'im2col_bf16', 'conv1x1': 'matmul_bf16'})
ACCELERATOR_IMPLS = MappingProxyType({kind: 'reference' for kind in CPU_IMPLS})
KINDS = tuple(CPU_IMPLS)
_TABLES = MappingProxyType({'down': DOWN_IMPLS, 'up': UP_IMPLS, 'conv3x3': CONV3X3_IMPLS,
                            'conv1x1': CONV1X1_IMPLS})


def auto_impls(backend: Optional[str] = None, dtype: Any = None) -> dict:
  """Formulation names impl='auto' uses on `backend` (default
  jax.default_backend()) for layers computing in `dtype` (default float32):
  {kind: name} for every kind in KINDS; CPU_IMPLS on 'cpu' (CPU_BF16_IMPLS
  for bfloat16), ACCELERATOR_IMPLS on anything else."""
  backend = jax.default_backend() if backend is None else backend
  if backend != 'cpu':
    return dict(ACCELERATOR_IMPLS)
  bf16 = dtype is not None and jnp.dtype(dtype) == jnp.bfloat16
  return dict(CPU_BF16_IMPLS if bf16 else CPU_IMPLS)


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


def effective_impls(impls=(), backend: Optional[str] = None, dtype: Any = None) -> dict:
  """{kind: name} that impl='auto' layers computing in `dtype` with these
  overrides use on `backend`."""
  return {**auto_impls(backend, dtype), **dict(check_impls(impls))}


def choose(kind: str, narrow: bool = False, impl: str = 'auto', overrides=(),
           backend: Optional[str] = None, dtype: Any = None):
  """The function (x, kernel, bias) -> y for a layer of `kind` ('down', 'up',
  'conv3x3' or 'conv1x1') computing in `dtype`: `impl` by name, or for
  impl='auto' the entry of effective_impls(overrides, backend, dtype) for
  kind (+ '_narrow' if narrow)."""
  table = _TABLES[kind]
  if impl == 'auto':
    key = kind + ('_narrow' if narrow and kind + '_narrow' in KINDS else '')
    impl = effective_impls(overrides, backend, dtype)[key]
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
    f = choose('down', x.shape[-1] <= NARROW, self.impl, self.overrides, dtype=x.dtype)
    return f(x, *_kernel_and_bias(self, 4, x, self.features))


class UpConv(nn.Module):
  """4x4 stride-2 transposed convolution, padding 1: [B, H, W, Ci] -> [B, 2H, 2W, features].

  impl and overrides as in DownConv (UP_IMPLS names)."""
  features: int
  impl: str = 'auto'
  overrides: tuple = ()

  @nn.compact
  def __call__(self, x):
    f = choose('up', self.features <= NARROW, self.impl, self.overrides, dtype=x.dtype)
    return f(x, *_kernel_and_bias(self, 4, x, self.features))


class Conv3x3(nn.Module):
  """3x3 stride-1 convolution, padding 1 (nn.Conv(features, (3, 3), padding=1)).

  impl and overrides as in DownConv (CONV3X3_IMPLS names)."""
  features: int
  impl: str = 'auto'
  overrides: tuple = ()

  @nn.compact
  def __call__(self, x):
    f = choose('conv3x3', False, self.impl, self.overrides, dtype=x.dtype)
    return f(x, *_kernel_and_bias(self, 3, x, self.features))


class Conv1x1(nn.Module):
  """1x1 convolution as one matmul (nn.Conv(features, (1, 1)): same variables).

  impl and overrides as in DownConv (CONV1X1_IMPLS names)."""
  features: int
  impl: str = 'auto'
  overrides: tuple = ()

  @nn.compact
  def __call__(self, x):
    f = choose('conv1x1', False, self.impl, self.overrides, dtype=x.dtype)
    return f(x, *_kernel_and_bias(self, 1, x, self.features))


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
