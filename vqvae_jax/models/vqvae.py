"""The VQ-VAE of van den Oord et al. (2017), with pytorch-vqvae's architecture.

Encoder: Conv4x4/2 -> BN -> ReLU -> Conv4x4/2 -> ResBlock -> ResBlock.
Decoder: ResBlock -> ResBlock -> ReLU -> ConvT4x4/2 -> BN -> ReLU -> ConvT4x4/2 -> tanh.
ResBlock: x + BN(Conv1x1(ReLU(BN(Conv3x3(ReLU(x)))))).
Convolutions are Xavier-uniform with zero bias; the codebook is U(-1/K, 1/K).

Images are [B, H, W, C] in [-1, 1], H and W divisible by 4, C = 1 or 3; the code
grid is [B, H/4, W/4]. BatchNorm uses batch statistics (synchronised over
`axis_name` under pmap) only when `train=True`, running averages otherwise.
`impls` ((kind, name) pairs, see layers.check_impls) overrides the per-backend
choice of convolution formulation; it never changes the parameters.
"""
from __future__ import annotations

from typing import Any, NamedTuple, Optional

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from vqvae_jax.errors import UserError
from vqvae_jax.models import layers
from vqvae_jax.models.quantizer import vq, vq_st


def to_float(images):
  """uint8 [0, 255] -> float32 [-1, 1]: the model's input scale."""
  return images.astype(jnp.float32) / 127.5 - 1.0


def to_uint8(x) -> np.ndarray:
  """Images in [-1, 1] (any float) -> uint8 [0, 255], rounded (on the host)."""
  x = np.asarray(x, np.float32)
  return np.clip(np.round((x + 1.0) * 127.5), 0, 255).astype(np.uint8)


def _bn(train, axis_name, dtype):
  # momentum 0.9 in Flax is PyTorch's momentum=0.1. layers.BatchNorm is
  # nn.BatchNorm with its reductions as matmuls (faster on XLA:CPU); same
  # variables, same function.
  return layers.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5,
                          axis_name=axis_name if train else None, dtype=dtype)


class ResBlock(nn.Module):
  """x [B, h, w, C] -> x + BN(Conv1x1(ReLU(BN(Conv3x3(ReLU(x)))))), same shape."""
  axis_name: Optional[str] = None
  dtype: Any = jnp.float32
  impls: tuple = ()

  @nn.compact
  def __call__(self, x, train: bool):
    dim = x.shape[-1]
    h = nn.relu(x).astype(self.dtype)
    # Both named as the nn.Conv layers they replace, so checkpoints keep their layout.
    h = layers.Conv3x3(dim, overrides=self.impls, name='Conv_0')(h)
    h = _bn(train, self.axis_name, self.dtype)(h)
    h = nn.relu(h)
    h = layers.Conv1x1(dim, overrides=self.impls, name='Conv_1')(h)
    h = _bn(train, self.axis_name, self.dtype)(h)
    return x + h


class Encoder(nn.Module):
  """x [B, H, W, C] -> z_e [B, H/4, W/4, hidden]."""
  hidden: int
  axis_name: Optional[str] = None
  dtype: Any = jnp.float32
  impls: tuple = ()

  @nn.compact
  def __call__(self, x, train: bool):
    x = x.astype(self.dtype)
    x = layers.DownConv(self.hidden, overrides=self.impls)(x)
    x = _bn(train, self.axis_name, self.dtype)(x)
    x = nn.relu(x)
    x = layers.DownConv(self.hidden, overrides=self.impls)(x)
    x = ResBlock(self.axis_name, self.dtype, self.impls)(x, train)
    return ResBlock(self.axis_name, self.dtype, self.impls)(x, train)


class Decoder(nn.Module):
  """z_q [B, h, w, hidden] -> images [B, 4h, 4w, channels] in (-1, 1)."""
  hidden: int
  channels: int
  axis_name: Optional[str] = None
  dtype: Any = jnp.float32
  impls: tuple = ()

  @nn.compact
  def __call__(self, z, train: bool):
    z = z.astype(self.dtype)
    z = ResBlock(self.axis_name, self.dtype, self.impls)(z, train)
    z = ResBlock(self.axis_name, self.dtype, self.impls)(z, train)
    z = nn.relu(z)
    z = layers.UpConv(self.hidden, overrides=self.impls)(z)
    z = _bn(train, self.axis_name, self.dtype)(z)
    z = nn.relu(z)
    z = layers.UpConv(self.channels, overrides=self.impls)(z)
    return jnp.tanh(z.astype(jnp.float32))


class VQVAEOutput(NamedTuple):
  """x_tilde: [B, H, W, C] reconstruction; z_e: [B, h, w, D] encoder output;
  indices: [B, h, w] int32 codes."""
  x_tilde: Any
  z_e: Any
  indices: Any


class VQVAE(nn.Module):
  """VQ-VAE with a K x hidden codebook (`params['codebook']`).

  Example: channels=1, hidden=256, k=512 on x [128, 28, 28, 1] gives
  z_e [128, 7, 7, 256], indices [128, 7, 7], x_tilde [128, 28, 28, 1].
  `impls=(('up', 'sub2_conv'),)` computes the same function with another
  formulation of the wide UpConv (layers.check_impls lists the kinds).
  """
  channels: int = 1
  hidden: int = 256
  k: int = 512
  axis_name: Optional[str] = None
  dtype: Any = jnp.float32
  impls: tuple = ()

  def setup(self):
    impls = layers.check_impls(self.impls)
    self.encoder = Encoder(self.hidden, self.axis_name, self.dtype, impls)
    self.decoder = Decoder(self.hidden, self.channels, self.axis_name, self.dtype, impls)
    bound = 1.0 / self.k
    self.codebook = self.param(
        'codebook', lambda key, shape: nn.initializers.uniform(2 * bound)(key, shape) - bound,
        (self.k, self.hidden))

  def _check(self, x):
    if x.ndim != 4:
      raise UserError(f'images must be [B, H, W, C], got shape {x.shape}')
    if x.shape[-1] != self.channels:
      raise UserError(f'this model takes {self.channels}-channel images, got {x.shape[-1]} '
                      f'channels (shape {x.shape})')
    if x.shape[1] % 4 or x.shape[2] % 4:
      raise UserError(f'image height and width must be divisible by 4, got {x.shape[1:3]}')

  def __call__(self, x, train: bool = False):
    """x [B, H, W, C] in [-1, 1] -> VQVAEOutput (straight-through for training)."""
    self._check(x)
    z_e = self.encoder(x, train)
    z_q, indices = vq_st(z_e.astype(jnp.float32), self.codebook)
    x_tilde = self.decoder(z_q, train)
    return VQVAEOutput(x_tilde, z_e, indices)

  def encode(self, x):
    """x [B, H, W, C] in [-1, 1] -> indices [B, H/4, W/4] int32 (eval mode)."""
    self._check(x)
    return vq(self.encoder(x, False).astype(jnp.float32), self.codebook)

  def decode(self, indices):
    """indices [B, h, w] int -> images [B, 4h, 4w, C] in (-1, 1) (eval mode)."""
    z_q = jnp.take(self.codebook, indices, axis=0)
    return self.decoder(z_q, False)
