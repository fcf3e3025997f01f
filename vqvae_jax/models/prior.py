"""Class-conditional Gated PixelCNN prior over VQ-VAE code grids.

Gated PixelCNN: van den Oord, Kalchbrenner, Vinyals, Espeholt, Graves and
Kavukcuoglu, "Conditional Image Generation with PixelCNN Decoders", NeurIPS 2016,
as used for the prior of VQ-VAE (van den Oord, Vinyals and Kavukcuoglu, "Neural
Discrete Representation Learning", NeurIPS 2017, section 4).

The model reads a grid of discrete codes `[B, h, w]` (values in `[0, K)`) and a
class label per grid `[B]`, and returns logits `[B, h, w, K]` of
p(z[i, j] | z[<(i, j)], y) in raster order. Example with the defaults (K=512,
hidden 64, 15 layers) on 8x8 CIFAR-10 codes: codes [64, 8, 8] int32 and labels
[64] int32 -> logits [64, 8, 8, 512] float32.

Layers (all convolutions channels-last):
  embed       K -> hidden, N(0, 1) like torch's nn.Embedding.
  15 gated layers, each with a vertical stack (v, sees rows above) and a
  horizontal stack (h, sees the current row to the left):
    v_pre = conv_v(v)                          vertical window, see below
    v'    = gate(v_pre + c)
    h'    = h_proj(gate(v_to_h(v_pre) + conv_h(h) + c)) [+ h after layer 0]
    gate(t) = tanh(t[..., :hidden]) * sigmoid(t[..., hidden:]),
    c = class_bias(y): a learned [2 * hidden] vector per class and layer.
  head        logits = out(relu(head(h))): 1x1 convs hidden -> 512 -> K.

Causality comes only from the shape and placement of the kernels (zero padding
on the causal side, cropping on the other), never from masking weights:
  layer 0 ("mask A", kernel k0 = 7, r0 = 3): vertical window rows i-3..i-1,
    columns j-3..j+3 (kernel 3x7); horizontal window row i, columns j-3..j-1
    (kernel 1x3).
  layers 1.. ("mask B", kernel k = 3, r = 1): vertical window rows i-1..i,
    columns j-1..j+1 (kernel 2x3), fed by the previous layer's v, which already
    excludes row i; horizontal window columns j-1..j (kernel 1x2), fed by the
    previous h, which already excludes (i, j).
So the logits at (i, j) see exactly the rows i-R..i-1 with |j' - j| <= R, and
the columns j-R..j-1 of row i, with R = r0 + (num_layers - 1) * r (17 for the
defaults): no blind spot. Any grid shape works, square or not.

Parameters: 1,775,936 for the defaults. The PyTorch reference (and the original
pytorch-vqvae model) has 1,841,472: its first layer keeps full 4x7 vertical and
1x4 horizontal kernels and zeroes their last row / column with a mask, so it
carries 7*64*128 + 64*128 = 65,536 weights that never affect the output. The
layers that do compute are the same.
"""
from __future__ import annotations

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

_LOG2 = math.log(2.0)


def conv_windows(kernel: int, first: bool):
  """Where the two convolutions of one gated layer look, as padding amounts.

  Returns `(v_pad, h_pad)`: `v_pad = ((top, bottom), (left, right))` pads the
  vertical stack's input and `h_pad = (left, right)` the horizontal one's, so a
  VALID convolution gives an output the size of the input. Negative amounts
  crop: the output at (i, j) reads input rows i-top..i+bottom and columns
  j-left..j+right. For `kernel=7, first=True`: `((3, -1), (3, 3)), (3, -1)`.
  """
  if kernel % 2 != 1 or kernel < 3:
    raise ValueError(f'kernel must be odd and >= 3, got {kernel}')
  r = kernel // 2
  last = -1 if first else 0  # mask A excludes the current row / column
  return ((r, last), (r, r)), (r, last)


def _pad(x, pads):
  """x: [B, H, W, C]; pads ((top, bottom), (left, right)), negative crops."""
  (t, b), (l, r) = pads
  zero = jnp.zeros((), x.dtype)
  return lax.pad(x, zero, ((0, 0, 0), (t, b, 0), (l, r, 0), (0, 0, 0)))


def _xavier_uniform(key, shape, dtype=jnp.float32):
  """Glorot uniform like torch's xavier_uniform_ for [..., in, out] kernels.

  Drawn flat and reshaped: same distribution as flax's `xavier_uniform`, but
  XLA on CPU compiles a 4-D random draw several times slower than a flat one.
  """
  receptive = math.prod(shape[:-2])
  limit = math.sqrt(6.0 / ((shape[-2] + shape[-1]) * receptive))
  flat = jax.random.uniform(key, (math.prod(shape),), dtype, -limit, limit)
  return flat.reshape(shape)


def _gate(t):
  """t: [..., 2C] -> [..., C]: tanh(first half) * sigmoid(second half)."""
  a, b = jnp.split(t, 2, axis=-1)
  return jnp.tanh(a) * nn.sigmoid(b)


class GatedLayer(nn.Module):
  """One gated layer: vertical + horizontal stack, class-conditional gates.

  The methods `vertical` and `horizontal` take windows that are already padded
  (`conv_windows`) and run VALID convolutions, so the fast sampler can call them
  on one row or one position; `__call__` does the whole grid.
  """
  hidden: int
  kernel: int
  num_classes: int
  first: bool
  dtype: Any = jnp.float32  # compute dtype; parameters stay float32

  def setup(self):
    (v_rows, _), h_cols = conv_windows(self.kernel, self.first)
    v_rows, h_cols = sum(v_rows) + 1, sum(h_cols) + 1
    init = _xavier_uniform
    two = 2 * self.hidden
    dt = self.dtype
    self.class_bias = nn.Embed(self.num_classes, two, dtype=dt,
                               embedding_init=nn.initializers.normal(1.0))
    self.v_conv = nn.Conv(two, (v_rows, self.kernel), padding='VALID', kernel_init=init, dtype=dt)
    self.v_to_h = nn.Dense(two, kernel_init=init, dtype=dt)
    self.h_conv = nn.Conv(two, (1, h_cols), padding='VALID', kernel_init=init, dtype=dt)
    self.h_proj = nn.Dense(self.hidden, kernel_init=init, dtype=dt)

  def bias(self, labels):
    """labels: [B] int -> c: [B, 1, 1, 2 * hidden]."""
    return self.class_bias(labels)[:, None, None, :]

  def vertical(self, window):
    """window: [B, rows + kh - 1, cols + kw - 1, C] -> v_pre [B, rows, cols, 2C]."""
    return self.v_conv(window)

  def vertical_out(self, v_pre, c):
    """v_pre: [B, r, s, 2C], c: class bias -> next vertical stack [B, r, s, C]."""
    return _gate(v_pre + c)

  def horizontal(self, v_pre, window, h, c):
    """New horizontal stack from v_pre [B, r, s, 2C], a padded window of h
    [B, r, s + kw - 1, C], h itself [B, r, s, C] (residual) and c -> [B, r, s, C]."""
    out = self.h_proj(_gate(self.v_to_h(v_pre) + self.h_conv(window) + c))
    return out if self.first else out + h

  def __call__(self, v, h, labels):
    """v, h: [B, H, W, C], labels: [B] -> (v', h'), both [B, H, W, C]."""
    v_pad, h_pad = conv_windows(self.kernel, self.first)
    c = self.bias(labels)
    v_pre = self.vertical(_pad(v, v_pad))
    h_new = self.horizontal(v_pre, _pad(h, ((0, 0), h_pad)), h, c)
    return self.vertical_out(v_pre, c), h_new


class GatedPixelCNN(nn.Module):
  """Class-conditional Gated PixelCNN over a grid of K discrete codes.

  Attributes:
    num_codes: K, the VQ-VAE codebook size (input and output alphabet).
    num_classes: number of class labels.
    hidden: channels of both stacks.
    num_layers: gated layers; the first uses `first_kernel` (mask A), the rest
      `kernel` (mask B).
    head_hidden: width of the 1x1 output layer before the K-way logits.
  """
  num_codes: int = 512
  num_classes: int = 10
  hidden: int = 64
  num_layers: int = 15
  head_hidden: int = 512
  first_kernel: int = 7
  kernel: int = 3
  dtype: Any = jnp.float32  # compute dtype (bfloat16 for speed); parameters stay float32

  def setup(self):
    self.embed = nn.Embed(self.num_codes, self.hidden, dtype=self.dtype,
                          embedding_init=nn.initializers.normal(1.0))
    self.layers = [
        GatedLayer(self.hidden, self.first_kernel if i == 0 else self.kernel,
                   self.num_classes, first=(i == 0), dtype=self.dtype)
        for i in range(self.num_layers)]
    init = _xavier_uniform
    self.head = nn.Dense(self.head_hidden, kernel_init=init, dtype=self.dtype)
    self.out = nn.Dense(self.num_codes, kernel_init=init, dtype=self.dtype)

  def __call__(self, codes, labels):
    """codes: [B, h, w] int, labels: [B] int -> logits [B, h, w, K] float32."""
    if codes.ndim != 3 or labels.shape != codes.shape[:1]:
      raise ValueError(f'expected codes [B, h, w] and labels [B], got '
                       f'{codes.shape} and {labels.shape}')
    return self.logits(self.embed(codes), labels)

  def logits(self, x, labels):
    """x: [B, h, w, hidden] embedded codes, labels: [B] -> [B, h, w, K]."""
    v = h = x
    for layer in self.layers:
      v, h = layer(v, h, labels)
    return self.output(h)

  def output(self, h):
    """h: [..., hidden] last horizontal stack -> [..., K] logits."""
    return self.out(nn.relu(self.head(h))).astype(jnp.float32)

  def receptive_radius(self):
    """R: logits at (i, j) see rows i-R..i-1 (|dj| <= R) and row i, j-R..j-1."""
    return self.first_kernel // 2 + (self.num_layers - 1) * (self.kernel // 2)


def cross_entropy(logits, codes):
  """Mean negative log-likelihood in nats per code (the training loss).

  logits: [B, h, w, K] float, codes: [B, h, w] int -> scalar float32.
  """
  logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
  return -jnp.mean(jnp.take_along_axis(logp, codes[..., None], axis=-1))


def nll_bits(logits, codes):
  """-log2 p(codes | label) per grid, summed over its h * w positions.

  logits: [B, h, w, K] float, codes: [B, h, w] int -> [B] float32 bits. Divide
  by h * w for bits per code, or pass to `bits_per_dim`.
  """
  logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
  nats = -jnp.take_along_axis(logp, codes[..., None], axis=-1)[..., 0]
  return jnp.sum(nats, axis=(1, 2)) / _LOG2


def bits_per_dim(nll_bits_per_image, image_shape):
  """Paper-style bits per image dimension: prior NLL of the codes / (H * W * C).

  nll_bits_per_image: scalar or array of bits per image (`nll_bits`),
  image_shape: (H, W, C) of the images the codes stand for -> same shape as the
  input. E.g. 441 bits for a 7x7 code grid of a 28x28x1 image: 441 / 784 =
  0.5625 (which is exactly what a uniform prior over K = 512 codes would give).

  This is the cost of the discrete codes under the prior, conditioned on the
  label: the bits an entropy coder driven by the prior needs to store the code
  grid, spread over the image's dimensions. It does NOT include the bits for
  the label, nor any reconstruction term: the VQ-VAE decoder is deterministic
  (trained with MSE), so the decoded image is an approximation, not a lossless
  code, and this number is not a likelihood of the pixels and cannot be
  compared with a PixelCNN's bits/dim on raw pixels.
  """
  dims = math.prod(int(d) for d in image_shape)
  return nll_bits_per_image / dims
