"""The convolution formulations of `vqvae_jax.models.layers`, as pure functions.

Each computes one layer function (x [B, H, W, Ci], kernel, bias) -> y, NHWC:
`reference_down` (4x4 stride-2 convolution, padding 1), `reference_up` (its
transposed convolution) and `reference_conv3x3` (3x3, padding 1) are the
definitions, with lax convolutions; the others compute the same function
(same sums, other order; tests/test_layers.py checks values and gradients)
with pads, slices, reshapes/transposes and matrix products (`dot_general`),
whose forward and backward passes all map to XLA:CPU's fast matmul.

The tables DOWN_IMPLS / UP_IMPLS / CONV3X3_IMPLS / CONV1X1_IMPLS name them
all. The layers use the ones `layers.auto_impls(backend, dtype)` picks (on
CPU in float32: s2d_conv, phase_conv, col2im; on CPU in bfloat16 the '*_bf16'
matmul formulations; elsewhere the references); the rest are there for the
benchmarks (`benchmarks/profile_layers.py`, `bench_train.py --impl`) and the
tests. The '*_bf16' ones (`computes_in_bfloat16`) round their operands to
bfloat16 and accumulate in float32 whatever the input dtype.
"""
from __future__ import annotations

import functools

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


# ----------------------------------------------------------------------------
# bfloat16 matmul formulations, for CPUs with AMX / AVX512-BF16.
# XLA:CPU has no bfloat16 convolution (it converts them to float32), and its
# fast bfloat16 path, YNNPACK's dot, takes only the canonical [M, K] @ [K, N]
# form with a float32 result: a transposed operand falls back to float32.
# `conv_bf16` therefore computes a stride-1 convolution and its three
# gradients as canonical dots of bfloat16 operands (float32
# accumulation and result):
#   forward   y  = P . K                      P = patches(x)    [M, kh kw Ci]
#   kernel    dK = (dy^T . P)^T               dy^T [Co, M] copied once (small)
#   input     dx = patches(pad(dy)) . flip(K)^T
#   bias      db = ones . dy
# The patches are gathered as uint16 (the bfloat16 bits): XLA moves integers
# as they are, bfloat16 it would widen to float32 first.
# ----------------------------------------------------------------------------
def _bf16_bits(x):
  return lax.bitcast_convert_type(x.astype(jnp.bfloat16), jnp.uint16)


def _from_bits(u):
  return lax.bitcast_convert_type(u, jnp.bfloat16)


def _patches_bits(u, kh, kw):
  """u [B, Hp, Wp, C] -> [B * Ho * Wo, kh * kw * C], rows (b, i, j), columns (a, b, c)."""
  b, hp, wp, c = u.shape
  ho, wo = hp - kh + 1, wp - kw + 1
  taps = [u[:, a:a + ho, e:e + wo] for a in range(kh) for e in range(kw)]
  return jnp.concatenate(taps, axis=-1).reshape(b * ho * wo, kh * kw * c)


def _dot_f32(a, b):
  """[M, K] @ [K, N] of bfloat16 operands, float32 accumulation and result."""
  return lax.dot_general(a, b, (((1,), (0,)), ((), ())), preferred_element_type=jnp.float32)


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def conv_bf16(x, kernel, bias, padding=((0, 0), (0, 0))):
  """Stride-1 convolution plus bias (NHWC x HWIO), x zero-padded by
  `padding` ((lo_h, hi_h), (lo_w, hi_w), each at most kernel size - 1), in
  bfloat16 with float32 accumulation:
  [B, H, W, Ci] x [kh, kw, Ci, Co] + [Co] -> [B, H', W', Co] in x's dtype."""
  return _conv_bf16_fwd(x, kernel, bias, padding)[0]


def _conv_bf16_fwd(x, kernel, bias, padding):
  (lh, hh), (lw, hw) = padding
  kh, kw, ci, co = kernel.shape
  p = _patches_bits(_pad_hw(_bf16_bits(x), lh, hh, lw, hw), kh, kw)
  y = _dot_f32(_from_bits(p), kernel.reshape(kh * kw * ci, co).astype(jnp.bfloat16))
  y = y + bias.astype(jnp.float32)
  b, h, w, _ = x.shape
  y = y.reshape(b, h + lh + hh - kh + 1, w + lw + hw - kw + 1, co).astype(x.dtype)
  return y, (p, kernel, bias, x)


def _conv_bf16_bwd(padding, res, dy):
  (lh, hh), (lw, hw) = padding
  p, kernel, bias, x = res
  kh, kw, ci, co = kernel.shape
  g = _bf16_bits(dy)
  g2 = _from_bits(g.reshape(-1, co))
  # Bias gradient as a dot with ones (XLA:CPU's own column sum of a large
  # array is a slow reduce-window).
  db = _dot_f32(jnp.ones((1, g2.shape[0]), jnp.bfloat16), g2)[0]
  # [Co, M], one copy of the small operand. Transposed as [B, Ho Wo, Co] ->
  # [Co, B, Ho Wo]: a plain 2-D transpose XLA would fold back into the dot,
  # which is then no longer canonical and falls back to float32. (XLA
  # transposes bfloat16 ~5x faster than uint16; it gathers uint16 faster.)
  gt = g2.reshape(g.shape[0], -1, co).transpose(2, 0, 1).reshape(co, -1)
  dk = _dot_f32(gt, _from_bits(p)).reshape(co, kh, kw, ci).transpose(1, 2, 3, 0)
  # dx[j] = sum_a dy[j + lo - a] K[a]: a VALID convolution of dy padded by
  # (k - 1 - lo, k - 1 - hi) with the flipped kernel, on x's own grid.
  gp = _pad_hw(g, kh - 1 - lh, kh - 1 - hh, kw - 1 - lw, kw - 1 - hw)
  kf = jnp.flip(kernel, (0, 1)).transpose(0, 1, 3, 2).reshape(kh * kw * co, ci)
  dx = _dot_f32(_from_bits(_patches_bits(gp, kh, kw)), kf.astype(jnp.bfloat16))
  return dx.reshape(x.shape).astype(x.dtype), dk.astype(kernel.dtype), db.astype(bias.dtype)


conv_bf16.defvjp(_conv_bf16_fwd, _conv_bf16_bwd)


def conv3x3_im2col_bf16(x, kernel, bias):
  """conv_bf16 with padding 1."""
  return conv_bf16(x, kernel, bias, ((1, 1), (1, 1)))


def down_s2d_bf16(x, kernel, bias):
  """Space-to-depth, then conv_bf16 with the 2x2 kernel."""
  s, _, _ = _down_prepare(x)
  return conv_bf16(s, _down_kernel(kernel), bias)


@jax.custom_vjp
def _assemble_bf16(z):
  """_up_sub2_assemble of a bfloat16 z, both ways as uint16 bits (pure data
  movement: exact, and no widening to float32)."""
  _, hp, wp, c4 = z.shape
  return _from_bits(_up_sub2_assemble(_bf16_bits(z), hp - 1, wp - 1, c4 // 4))


def _assemble_bf16_fwd(z):
  return _assemble_bf16(z), z.shape


def _assemble_bf16_bwd(shape, dy):
  """dz[m + r, n + s, (r, s)] = dy[2m + r, 2n + s]; zero where no output reads z."""
  b, hp, wp, c4 = shape
  h, w, co = hp - 1, wp - 1, c4 // 4
  g = _bf16_bits(dy).reshape(b, h, 2, w, 2, co)
  phases = [_pad_hw(g[:, :, r, :, s], r, 1 - r, s, 1 - s) for r in (0, 1) for s in (0, 1)]
  dz = jnp.stack(phases, axis=3).reshape(shape)  # channels (r, s, o)
  return (_from_bits(dz).astype(dy.dtype),)


_assemble_bf16.defvjp(_assemble_bf16_fwd, _assemble_bf16_bwd)


def up_sub2_bf16(x, kernel, bias):
  """up_sub2_conv with conv_bf16 (in bfloat16: z is rounded to bfloat16
  before the assembly, as the output would be). The bias, added to every
  phase of z (each output takes exactly one z value), has the same gradient."""
  z = conv_bf16(x, _up_sub2_kernel(kernel), jnp.tile(bias, 4), ((1, 1), (1, 1)))
  if z.dtype == jnp.bfloat16:
    return _assemble_bf16(z)
  _, h, w, _ = x.shape
  return _up_sub2_assemble(z, h, w, kernel.shape[-1])


def conv1x1(x, kernel, bias):
  """1x1 convolution as one matmul (kernel [1, 1, Ci, Co])."""
  return _matmul(x, kernel.reshape(kernel.shape[-2], kernel.shape[-1])) + bias


def conv1x1_matmul_bf16(x, kernel, bias):
  """conv1x1 as conv_bf16 (its patches are the input itself)."""
  return conv_bf16(x, kernel, bias)


DOWN_IMPLS = {
    'reference': reference_down,
    's2d_conv': down_s2d_conv,
    's2d_matmul': down_s2d_matmul,
    's2d_dotgrad': down_s2d_dotgrad,
    's2d_bf16': down_s2d_bf16,
}
UP_IMPLS = {
    'reference': reference_up,
    'sub3_conv': up_sub3_conv,
    'sub2_conv': up_sub2_conv,
    'col2im': up_col2im,
    'phase_conv': up_phase_conv,
    'sub2_dotgrad': up_sub2_dotgrad,
    'sub2_bf16': up_sub2_bf16,
}
CONV3X3_IMPLS = {
    'reference': reference_conv3x3,
    'matmul': conv3x3_matmul,
    'dotgrad': conv3x3_dotgrad,
    'im2col_bf16': conv3x3_im2col_bf16,
}
CONV1X1_IMPLS = {
    'reference': conv1x1,
    'matmul_bf16': conv1x1_matmul_bf16,
}


def computes_in_bfloat16(name: str) -> bool:
  """True for the formulations that round their operands to bfloat16 whatever
  the input dtype (names ending in 'bf16'): the same function as the
  reference only up to that rounding."""
  return name.endswith('bf16')
