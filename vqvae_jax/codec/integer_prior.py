"""The Gated PixelCNN prior in integer arithmetic, for portable entropy coding.

A range decoder must rebuild the encoder's probability tables bit for bit.
Float inference cannot promise that across thread counts, ISAs, GPUs or XLA
versions (summation order changes the last bits), so the coding path runs a
converted copy of the trained float prior in which every value is an integer
and every operation is exact (Ballé, Johnston and Minnen, "Integer networks for
data compression with latent-variable models", ICLR 2019):

  * weights: int8, one power-of-two scale per output channel (post-training
    quantisation, `quantize`);
  * activations fed to a matrix product: int8 with a power-of-two scale per
    tensor, calibrated on training codes (saturating);
  * products: int8 x int8 dots accumulated in int32 (at most 127^2 * fan-in,
    far below 2^31, so no overflow; integer addition is associative, so the
    order of summation cannot matter);
  * rescaling: arithmetic shifts with round-half-up; biases and class biases
    are int32 at the accumulator's scale;
  * the gates: tanh and sigmoid as lookup tables (`gate_tables`), computed once
    with Python's `decimal` (correctly rounded, the same everywhere);
  * the residual horizontal stack is carried in int32 with 12 fractional bits;
  * the logits are int32 in units of 1/64 nat: the coder's frequency tables
    (`entropy.frequencies_from_logits`) follow from them exactly.

A value written q with f fractional bits stands for q * 2^-f. The layer
structure is `vqvae_jax.models.prior`'s (see its docstring): for layer l,
  v_pre = conv_v(v) + b                        (int32, F_GATE bits)
  v'    = gate(v_pre + c_y)                    (int8, 7 bits)
  h'    = h_proj(gate(v_to_h(v_pre) + conv_h(h) + c_y)) [+ h]   (int32, F_RES bits)
and logits = out(relu(head(h))).

`logits(iprior, codes, labels)` runs the whole grid at once (teacher forcing,
for the encoder); `row_step` / `position_step` compute one row's vertical stacks
and one position's horizontal stacks and logits (for the decoder). Integer
arithmetic makes the two give identical logits, whatever the batch. The arrays
live in `IntegerPrior.arrays` (NumPy), saved as an `.npz` (`save` / `load`)
whose sha256 is the prior's fingerprint in `.vqz` files.
"""
from __future__ import annotations

import dataclasses
import decimal
import functools
import hashlib
import io
import math
import os

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from vqvae_jax.fileio import atomic_write
from vqvae_jax.models.prior import GatedPixelCNN, conv_windows

FORMAT = 1          # version of the arrays' layout (stored in the .npz)
QMAX = 127          # int8 range used: [-127, 127]
F_GATE = 8          # fractional bits of gate inputs (and v_pre)
F_GATE_OUT = 7      # gate outputs in (-1, 1) as int8
F_RES = 12          # the residual horizontal stack (int32)
F_LOGIT = 6         # logits in 1/64 nat
F_TABLE = 14        # fractional bits of the tanh / sigmoid tables
GATE_RANGE = 8      # gate inputs are clamped to [-8, 8]
_CALIB_MARGIN = 1.0


# --- fixed-point helpers (all exact integer arithmetic) ----------------------

def _shift_round(x, shift):
  """x * 2^-shift rounded half up, for int32 x and integer shift (any sign;
  per channel if an array): the rescaling between fixed-point formats."""
  shift = jnp.asarray(shift, jnp.int32)
  right = jnp.maximum(shift, 0)
  half = jnp.where(right > 0, jnp.left_shift(1, jnp.maximum(right - 1, 0)), 0)
  down = jnp.right_shift(x + half, right)
  return jnp.left_shift(down, jnp.maximum(-shift, 0))


def _to_int8(x):
  """Saturating int32 -> int8 in [-127, 127]."""
  return jnp.clip(x, -QMAX, QMAX).astype(jnp.int8)


def _dot(x, w):
  """x [..., n] int8, w [n, m] int8 -> [..., m] int32 (exact)."""
  return lax.dot_general(x, w, (((x.ndim - 1,), (0,)), ((), ())),
                         preferred_element_type=jnp.int32)


def _conv(window, kernel, kh, kw):
  """VALID convolution as patches @ kernel: window [B, R+kh-1, S+kw-1, C] int8,
  kernel [kh * kw * C, O] int8 (rows ordered (dy, dx, c)) -> [B, R, S, O] int32."""
  rows, cols = window.shape[1:3]
  r, s = rows - kh + 1, cols - kw + 1
  patches = jnp.concatenate([window[:, dy:dy + r, dx:dx + s]
                             for dy in range(kh) for dx in range(kw)], axis=-1)
  return _dot(patches, kernel)


@functools.lru_cache(maxsize=4)
def gate_tables(f_in: int = F_GATE, f_out: int = F_TABLE, limit: int = GATE_RANGE):
  """tanh and sigmoid on the grid t = i * 2^-f_in, |t| <= limit -> two int32
  arrays [2 * limit * 2^f_in + 1], values round(2^f_out * fn(t)), computed
  with `decimal` at 40 digits (the same on every machine)."""
  ctx = decimal.Context(prec=40)
  n = limit << f_in
  one = decimal.Decimal(1)
  scale = decimal.Decimal(1 << f_out)
  tanh, sig = [], []
  for i in range(-n, n + 1):
    t = ctx.divide(decimal.Decimal(i), decimal.Decimal(1 << f_in))
    e2 = ctx.exp(2 * t)
    tanh.append(int(ctx.multiply(ctx.divide(e2 - one, e2 + one), scale)
                    .to_integral_value(rounding=decimal.ROUND_HALF_UP)))
    sig.append(int(ctx.multiply(ctx.divide(one, one + ctx.exp(-t)), scale)
                   .to_integral_value(rounding=decimal.ROUND_HALF_UP)))
  return np.array(tanh, np.int32), np.array(sig, np.int32)


def _lookup(table, index):
  """table[index] for an increasing table and indices known to be in range.

  The gather sits alone in a conditional branch (always taken: the tables are
  increasing), because XLA's CPU backend would otherwise fuse it with the
  arithmetic around it into one scalar loop, several times slower than the
  vectorised loops it runs on either side. Exact either way."""
  return lax.cond(table[0] <= table[-1],
                  lambda: table.at[index].get(mode='promise_in_bounds'),
                  lambda: jnp.zeros_like(index))


def _gate(t, tables):
  """t [..., 2C] int32 with F_GATE bits -> tanh(a) * sigmoid(b) [..., C] int8, 7 bits."""
  tanh, sig = tables
  n = GATE_RANGE << F_GATE
  a, b = jnp.split(jnp.clip(t, -n, n) + n, 2, axis=-1)
  prod = _lookup(tanh, a) * _lookup(sig, b)            # |.| <= 2^28
  return _to_int8(_shift_round(prod, 2 * F_TABLE - F_GATE_OUT))


# --- the converted model -------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class IntegerPrior:
  """An integer Gated PixelCNN: static sizes + NumPy arrays (see `quantize`).

  arrays: 'embed' [K, C] int8; per layer l, 'l{l}/<name>' for
  v_w, h_w [kh * kw * C, 2C], vh_w [2C, 2C], p_w [C, 2C -> C] int8 kernels
  with their per-output-channel shifts '<name>_s' int32 and biases '<name>_b'
  int32, 'cls' [classes, 2C] int32; 'f' [num_layers, 2] int32 the calibrated
  fractional bits of (v_pre as int8, h as int8); 'head_w', 'out_w', ... for
  the head; 'f_embed', 'f_relu' scalars.
  """
  num_codes: int
  num_classes: int
  hidden: int
  num_layers: int
  first_kernel: int
  kernel: int
  arrays: dict = dataclasses.field(compare=False, hash=False, repr=False)

  def __hash__(self):  # static argument of jitted functions: sizes + fingerprint
    return hash((self.num_codes, self.num_classes, self.hidden, self.num_layers,
                 self.first_kernel, self.kernel, self.fingerprint))

  def __eq__(self, other):
    return isinstance(other, IntegerPrior) and hash(self) == hash(other) and (
        self.fingerprint == other.fingerprint)

  @functools.cached_property
  def fingerprint(self) -> bytes:
    """sha256 of the sizes and every array (name, dtype, shape, bytes) but the
    label table, which only guides the encoder's choice of label."""
    h = hashlib.sha256(repr(self._sizes()).encode())
    for name in sorted(set(self.arrays) - {LABEL_TABLE}):
      a = np.ascontiguousarray(self.arrays[name])
      h.update(f'{name}:{a.dtype.str}:{a.shape}'.encode())
      h.update(a.tobytes())
    return h.digest()

  def _sizes(self):
    return (FORMAT, self.num_codes, self.num_classes, self.hidden, self.num_layers,
            self.first_kernel, self.kernel)

  def windows(self):
    return [conv_windows(self.first_kernel if l == 0 else self.kernel, first=(l == 0))
            for l in range(self.num_layers)]


LABEL_TABLE = 'label_logp'  # [classes, K] float32, see `label_table`


def label_table(codes, labels, num_classes: int, num_codes: int) -> np.ndarray:
  """log p(code | label) of a bag of codes, from training grids codes [N, h, w]
  and labels [N] (counts + 1/2): float32 [num_classes, num_codes]. The encoder
  ranks labels with it (`entropy.label_candidates`) before running the prior;
  a poor table only makes files longer, never undecodable."""
  codes = np.asarray(codes).reshape(len(codes), -1)
  counts = np.full((num_classes, num_codes), 0.5)
  np.add.at(counts, (np.repeat(np.asarray(labels), codes.shape[1]), codes.reshape(-1)), 1.0)
  return np.log(counts / counts.sum(axis=1, keepdims=True)).astype(np.float32)


def with_label_table(iprior: IntegerPrior, codes, labels) -> IntegerPrior:
  """`iprior` with the label table of these training grids (same fingerprint)."""
  table = label_table(codes, labels, iprior.num_classes, iprior.num_codes)
  return dataclasses.replace(iprior, arrays=dict(iprior.arrays, **{LABEL_TABLE: table}))


def save(iprior: IntegerPrior, path: str):
  """Writes the model to `path` (.npz) atomically."""
  buf = io.BytesIO()
  np.savez(buf, _sizes=np.array(iprior._sizes(), np.int64), **iprior.arrays)  # pylint: disable=protected-access
  atomic_write(path, buf.getvalue())


def load(path: str) -> IntegerPrior:
  """Reads a model written by `save` (ValueError if it is not one)."""
  with np.load(path, allow_pickle=False) as z:
    arrays = {k: z[k] for k in z.files if k != '_sizes'}
    sizes = [int(s) for s in z['_sizes']]
  if sizes[0] != FORMAT:
    raise ValueError(f'{path}: integer prior format {sizes[0]}, expected {FORMAT}')
  return IntegerPrior(*sizes[1:], arrays=arrays)


def _quantize_kernel(w):
  """float [fan_in, O] -> (int8 [fan_in, O], exponents e [O] int32) with
  w ~ q * 2^-e, e the largest with max |q| <= 127 per output channel."""
  w = np.asarray(w, np.float64)
  peak = np.maximum(np.abs(w).max(axis=0), 1e-30)
  e = np.clip(np.floor(np.log2(QMAX / peak)), -8, 24).astype(np.int32)
  q = np.clip(np.round(w * np.exp2(e)), -QMAX, QMAX).astype(np.int8)
  return q, e


def _frac_bits(peak):
  """Fractional bits of an int8 tensor whose values reach |peak|."""
  return int(np.clip(np.floor(np.log2(QMAX / max(float(peak) * _CALIB_MARGIN, 1e-30))), -8, 20))


def _fixed(x, f):
  return np.round(np.asarray(x, np.float64) * 2.0 ** f).astype(np.int32)


def _kernel_size(iprior: IntegerPrior, l: int):
  """((kh, kw) of the vertical conv, kw of the horizontal conv) of layer l."""
  (v_rows, v_cols), h_cols = iprior.windows()[l]
  return (sum(v_rows) + 1, sum(v_cols) + 1), sum(h_cols) + 1


def quantize(model: GatedPixelCNN, params, codes, labels) -> IntegerPrior:
  """Converts a trained float prior to integers, calibrated on code grids.

  codes: [N, h, w] int training grids, labels: [N] int (a few hundred are
  plenty). Each int8 activation's scale is the largest power of two that keeps
  its largest calibration value in range.
  """
  peaks = _calibrate(model, params, codes, labels)
  a = {}
  emb = np.asarray(params['embed']['embedding'], np.float64)
  f_embed = _frac_bits(np.abs(emb).max())
  a['embed'] = np.clip(np.round(emb * 2.0 ** f_embed), -QMAX, QMAX).astype(np.int8)
  f = np.zeros((model.num_layers, 2), np.int32)
  f_h_in = f_embed
  for l in range(model.num_layers):
    p = params[f'layers_{l}']
    f[l] = (_frac_bits(peaks['v_pre'][l]), _frac_bits(peaks['h'][l]))
    f_v_in = f_embed if l == 0 else F_GATE_OUT
    _put(a, f'l{l}/v', p['v_conv'], f_v_in, F_GATE)
    _put(a, f'l{l}/vh', p['v_to_h'], f[l, 0], F_GATE)
    _put(a, f'l{l}/h', p['h_conv'], f_h_in, F_GATE)
    _put(a, f'l{l}/p', p['h_proj'], F_GATE_OUT, F_RES)
    a[f'l{l}/cls'] = _fixed(p['class_bias']['embedding'], F_GATE)
    f_h_in = int(f[l, 1])
  f_relu = _frac_bits(peaks['relu'])
  _put(a, 'head', params['head'], f_h_in, f_relu)
  _put(a, 'out', params['out'], f_relu, F_LOGIT)
  a['f'] = f
  a['f_embed'] = np.array(f_embed, np.int32)
  return IntegerPrior(model.num_codes, model.num_classes, model.hidden, model.num_layers,
                      model.first_kernel, model.kernel, arrays=a)


def _put(a, name, dense, f_in, f_out):
  """Quantises a conv / dense layer {'kernel' [..., in, out], 'bias' [out]} whose
  input has f_in fractional bits, to produce f_out bits: '<name>_w', '_s', '_b'."""
  kernel = np.asarray(dense['kernel'], np.float64)
  q, e = _quantize_kernel(kernel.reshape(-1, kernel.shape[-1]))
  shift = f_in + e - f_out
  bound = int(np.abs(q.astype(np.int64)).sum(axis=0).max()) * QMAX
  if bound >= 1 << 30 or int(bound * 2.0 ** max(0, -int(shift.min()))) >= 1 << 30:
    raise ValueError(f'{name}: integer accumulator could overflow (bound {bound})')
  a[name + '_w'], a[name + '_s'] = q, shift.astype(np.int32)
  a[name + '_b'] = _fixed(dense['bias'], f_out)


def _calibrate(model: GatedPixelCNN, params, codes, labels) -> dict:
  """Largest |value| of each quantised activation of the float model."""
  codes = jnp.asarray(codes, jnp.int32)
  labels = jnp.asarray(labels, jnp.int32)
  _, inter = model.apply({'params': params}, codes, labels, capture_intermediates=True)
  inter = inter['intermediates']
  peak = lambda x: float(jnp.max(jnp.abs(x)))
  v_pre = [peak(inter[f'layers_{l}']['v_conv']['__call__'][0]) for l in range(model.num_layers)]
  h = [peak(inter[f'layers_{l}']['__call__'][0][1]) for l in range(model.num_layers)]
  relu = max(float(jnp.max(inter['head']['__call__'][0])), 1e-6)
  return {'v_pre': v_pre, 'h': h, 'relu': relu}


# --- forward passes --------------------------------------------------------------

_LAYER_KEYS = ('v_w', 'v_s', 'v_b', 'vh_w', 'vh_s', 'vh_b', 'h_w', 'h_s', 'h_b',
               'p_w', 'p_s', 'p_b', 'cls')


@functools.lru_cache(maxsize=1)
def _cpu_flags() -> frozenset:
  try:
    with open('/proc/cpuinfo') as f:
      for line in f:
        if line.startswith('flags'):
          return frozenset(line.partition(':')[2].split())
  except OSError:
    pass
  return frozenset()


def default_layer0() -> str:
  """How layer 0 runs here (`device_arrays`): 'conv', an int8 convolution,
  where int8 matrix products are fast (GPU, TPU, or a CPU with AMX or
  AVX-512 VNNI), else 'tables', sums of table lookups. Measured on the
  whole-grid pass and the decoder (`benchmarks/bench_codec.py`, 'network'):
  on a Xeon with AMX conv is the faster (1.2x whole grid, 1.08x decoder); on
  an AVX2 EPYC, where int8 dots ran at about 26 GFLOP/s, the tables were. Both give the same integers, so
  the environment variable VQVAE_INT_LAYER0 ('tables' or 'conv') may force
  either (the portability tests decode with the other one)."""
  forced = os.environ.get('VQVAE_INT_LAYER0')
  if forced:
    if forced not in ('tables', 'conv'):
      raise ValueError(f"VQVAE_INT_LAYER0 must be 'tables' or 'conv', got {forced!r}")
    return forced
  if jax.default_backend() != 'cpu':
    return 'conv'
  flags = _cpu_flags()
  return 'conv' if {'amx_int8', 'avx512_vnni'} & flags else 'tables'


def device_arrays(iprior: IntegerPrior, layer0: str = 'auto') -> dict:
  """The arrays as JAX arrays for the forward passes: {'first': layer 0,
  'rest': layers 1.. stacked on a leading axis (they have the same shapes, so
  one `lax.scan` runs them: a compiled program 1/num_layers the size), the
  embedding, head and gate tables}.

  Layer 0's two convolutions see only embedded codes. With layer0='tables'
  each becomes a sum of table lookups: 'v_table' [kh * kw, K + 1, 2C] and
  'h_table' [kw, K + 1, 2C] hold embed @ kernel tap for every code (row K,
  zeros, for positions outside the grid), exact int32 products computed once
  in int64 NumPy: the same integers the convolutions give, with no int8
  products. With layer0='conv' the codes are embedded ('embed_z', a zero row
  K added) and convolved in int8. 'auto': `default_layer0()`."""
  arr = iprior.arrays

  def layer(l):
    out = {k: jnp.asarray(arr[f'l{l}/{k}']) for k in _LAYER_KEYS}
    out['f'] = jnp.asarray(arr['f'][l])
    return out

  rest = [layer(l) for l in range(1, iprior.num_layers)]
  out = {'first': layer(0), 'rest': jax.tree.map(lambda *x: jnp.stack(x), *rest) if rest else None}
  layer0 = default_layer0() if layer0 == 'auto' else layer0
  if layer0 == 'tables':
    for name in ('v', 'h'):
      out['first'][name + '_table'] = jnp.asarray(_tap_tables(arr['embed'], arr[f'l0/{name}_w']))
  elif layer0 == 'conv':
    out['first']['embed_z'] = jnp.asarray(np.concatenate(
        [arr['embed'], np.zeros((1, arr['embed'].shape[1]), np.int8)]))
  else:
    raise ValueError(f"layer0 must be 'auto', 'tables' or 'conv', got {layer0!r}")
  for k in ('embed', 'head_w', 'head_s', 'head_b', 'out_w', 'out_s', 'out_b'):
    out[k] = jnp.asarray(arr[k])
  out['tanh'], out['sigmoid'] = (jnp.asarray(t) for t in gate_tables())
  return out


def _tap_tables(embed, kernel) -> np.ndarray:
  """embed [K, C] int8, kernel [taps * C, O] int8 -> int32 [taps, K + 1, O]:
  table[t, z] = embed[z] @ kernel[t * C:(t + 1) * C], and table[t, K] = 0."""
  c = embed.shape[1]
  w = np.asarray(kernel, np.int64).reshape(-1, c, kernel.shape[-1])
  table = np.einsum('zc,tco->tzo', np.asarray(embed, np.int64), w)
  table = np.concatenate([table, np.zeros((len(w), 1, w.shape[-1]), np.int64)], axis=1)
  return table.astype(np.int32)  # |entries| <= 127^2 * C, far inside int32


def _table_conv(table, codes, kh, kw):
  """The layer-0 convolution of embedded codes by lookups: codes [B, R+kh-1,
  S+kw-1] int32 (K outside the grid), table [kh * kw, K + 1, O] -> [B, R, S, O]
  int32, the same integers as `_conv` of the embeddings."""
  rows, cols = codes.shape[1:3]
  r, s = rows - kh + 1, cols - kw + 1
  out = None
  for dy in range(kh):
    for dx in range(kw):
      term = jnp.take(table[dy * kw + dx], codes[:, dy:dy + r, dx:dx + s], axis=0)
      out = term if out is None else out + term
  return out


def _layer0_conv(p, name, codes, kh, kw):
  """Layer 0's `name` ('v' or 'h') convolution of the codes [B, R+kh-1,
  S+kw-1] (K outside the grid) -> [B, R, S, 2C] int32: table lookups where
  `device_arrays` made tables, else an int8 convolution of the embedded codes
  ('embed_z': the embedding with a zero row K). The same integers either way."""
  if name + '_table' in p:
    return _table_conv(p[name + '_table'], codes, kh, kw)
  return _conv(jnp.take(p['embed_z'], codes, axis=0), p[name + '_w'], kh, kw)


def _pad(x, pads):
  (t, b), (l, r) = pads
  return lax.pad(x, jnp.zeros((), x.dtype), ((0, 0, 0), (t, b, 0), (l, r, 0), (0, 0, 0)))


def _pad_codes(iprior, codes, pads):
  """codes [B, h, w] padded with K (the tables' zero row): pads ((t, b), (l, r))."""
  (t, b), (l, r) = pads
  return lax.pad(codes, jnp.int32(iprior.num_codes), ((0, 0, 0), (t, b, 0), (l, r, 0)))


def _vertical(iprior, l, p, window):
  """Layer l's (0, or any later one: p its arrays) vertical conv -> v_pre
  [B, R, S, 2C] int32 (F_GATE bits). window: for layer 0 the codes [B, R+kh-1,
  S+kw-1] (`_pad_codes`), else the layer below's v, int8 [B, R+kh-1, S+kw-1, C]."""
  (kh, kw), _ = _kernel_size(iprior, l)
  acc = _layer0_conv(p, 'v', window, kh, kw) if l == 0 else _conv(window, p['v_w'], kh, kw)
  return _shift_round(acc, p['v_s']) + p['v_b']


def _from_vertical(p, v_pre, c):
  """The horizontal stack's input from the vertical one: v_pre [B, R, S, 2C],
  c [B, 1, 1, 2C] -> int32 [B, R, S, 2C] (F_GATE bits), with its biases."""
  vp8 = _to_int8(_shift_round(v_pre, F_GATE - p['f'][0]))
  return _shift_round(_dot(vp8, p['vh_w']), p['vh_s']) + p['vh_b'] + p['h_b'] + c


def _horizontal(iprior, l, p, tables, from_v, window, h_res):
  """One horizontal stack: from_v [B, R, S, 2C] (`_from_vertical`), the h
  window (layer 0: codes [B, R, S+kw-1]; later: int8 [B, R, S+kw-1, C]), the
  residual h_res [B, R, S, C] int32 (None for layer 0) -> (h_res' int32
  F_RES bits, h' int8 with the layer's calibrated bits)."""
  _, kw = _kernel_size(iprior, l)
  acc = _layer0_conv(p, 'h', window, 1, kw) if l == 0 else _conv(window, p['h_w'], 1, kw)
  t = from_v + _shift_round(acc, p['h_s'])
  out = _shift_round(_dot(_gate(t, tables), p['p_w']), p['p_s']) + p['p_b']
  if h_res is not None:
    out = out + h_res
  return out, _to_int8(_shift_round(out, F_RES - p['f'][1]))


def _class_bias(p, labels):
  return jnp.take(p['cls'], labels, axis=0)[:, None, None, :]


def _head(a, h8):
  """h8 [..., C] int8 -> logits [..., K] int32 in 1/64 nat."""
  r = jnp.maximum(_shift_round(_dot(h8, a['head_w']), a['head_s']) + a['head_b'], 0)
  r8 = jnp.minimum(r, QMAX).astype(jnp.int8)
  return _shift_round(_dot(r8, a['out_w']), a['out_s']) + a['out_b']


@functools.partial(jax.jit, static_argnums=0)
def logits(iprior: IntegerPrior, a, codes, labels):
  """Whole-grid pass: codes [B, h, w] int, labels [B] int -> [B, h, w, K] int32
  logits in 1/64 nat; `a` = `device_arrays(iprior)`."""
  win, tables = iprior.windows(), (a['tanh'], a['sigmoid'])
  codes = jnp.asarray(codes, jnp.int32)

  def layer(l, p, v_win, h_win, h_res):
    c = _class_bias(p, labels)
    v_pre = _vertical(iprior, l, p, v_win)
    h_res, h8 = _horizontal(iprior, l, p, tables, _from_vertical(p, v_pre, c), h_win, h_res)
    return _gate(v_pre + c, tables), h8, h_res

  v, h8, h_res = layer(0, a['first'], _pad_codes(iprior, codes, win[0][0]),
                       _pad_codes(iprior, codes, ((0, 0), win[0][1])), None)
  if a['rest'] is not None:
    (v, h8, h_res), _ = lax.scan(
        lambda carry, p: (layer(1, p, _pad(carry[0], win[1][0]),
                                _pad(carry[1], ((0, 0), win[1][1])), carry[2]), None),
        (v, h8, h_res), a['rest'])
  return _head(a, h8)


def init_caches(iprior: IntegerPrior, batch: int, shape):
  """Zeroed decoder buffers for `row_step` / `position_step` on [batch, h, w]:
  v_cache [L-1, B, top + h, w, C] (rows of layers 0..L-2's v below `top`
  zero rows), h_row [L-1, B, left + w, C] (the current row of their h) and
  from_vs [w, L, B, 2C] int32 (`row_step`'s output, reused row after row)."""
  h, w = shape
  n = max(iprior.num_layers - 1, 1)
  if iprior.num_layers > 1:
    (top, _), _ = iprior.windows()[1][0]
    left = iprior.windows()[1][1][0]
  else:
    top = left = 0
  c = iprior.hidden
  return (jnp.zeros((n, batch, top + h, w, c), jnp.int8),
          jnp.zeros((n, batch, left + w, c), jnp.int8),
          jnp.zeros((w, iprior.num_layers, batch, 2 * c), jnp.int32))


@functools.partial(jax.jit, static_argnums=0, donate_argnums=(3, 4))
def row_step(iprior: IntegerPrior, a, codes, v_cache, from_vs, i, labels):
  """Vertical stacks of row i for every layer, from the codes of rows < i.

  codes [B, h, w] int32, v_cache and from_vs from `init_caches` or the last
  call (both updated in place: the layers run in a loop that carries them),
  i scalar int32 -> (from_vs [w, L, B, 2C] int32: each layer's
  horizontal-stack input from its vertical stack (`_from_vertical`),
  column-major so that `position_step` reads one column's slices, v_cache).
  """
  win, tables = iprior.windows(), (a['tanh'], a['sigmoid'])
  (top, bottom), _ = win[0][0]
  padded = _pad_codes(iprior, codes, ((top, 0), win[0][0][1]))
  first = a['first']
  c0 = _class_bias(first, labels)
  v_pre0 = _vertical(iprior, 0, first, lax.dynamic_slice_in_dim(padded, i, top + bottom + 1, 1))
  columns = lambda x: jnp.transpose(x[:, 0], (1, 0, 2))  # [B, 1, w, 2C] -> [w, B, 2C]
  from_v0 = columns(_from_vertical(first, v_pre0, c0))
  out = lax.dynamic_update_slice_in_dim(from_vs, from_v0[:, None], 0, axis=1)
  if a['rest'] is None:
    return out, v_cache
  (top, bottom), (left, right) = win[1][0]
  b, _, w, ch = v_cache.shape[1:]

  def body(carry, p):
    l, v_below, cache, out = carry  # cache[l]: the rows of layer l's v (the one below p)
    cache = lax.dynamic_update_slice(cache, v_below[None], (l, 0, i + top, 0, 0))
    rows = lax.dynamic_slice(cache, (l, 0, i, 0, 0), (1, b, top + bottom + 1, w, ch))[0]
    v_pre = _vertical(iprior, 1, p, jnp.pad(rows, ((0, 0), (0, 0), (left, right), (0, 0))))
    c = _class_bias(p, labels)
    from_v = columns(_from_vertical(p, v_pre, c))
    out = lax.dynamic_update_slice(out, from_v[:, None], (0, l + 1, 0, 0))
    return (l + 1, _gate(v_pre + c, tables), cache, out), None

  (_, _, v_cache, out), _ = lax.scan(
      body, (jnp.int32(0), _gate(v_pre0 + c0, tables), v_cache, out), a['rest'])
  return out, v_cache


@functools.partial(jax.jit, static_argnums=0, donate_argnums=4)
def position_step(iprior: IntegerPrior, a, codes, from_vs, h_row, i, j, labels):
  """Horizontal stacks and logits at (i, j) from the codes before it.

  codes [B, h, w] int32, from_vs from `row_step` of row i, h_row from
  `init_caches` (carried along the row, updated in place) -> (logits [B, K]
  int32, h_row).
  """
  del labels  # the class biases are in from_vs
  win, tables = iprior.windows(), (a['tanh'], a['sigmoid'])
  left0, right0 = win[0][1]
  src = _pad_codes(iprior, lax.dynamic_slice_in_dim(codes, i, 1, axis=1), ((0, 0), (left0, 0)))
  window = lax.dynamic_slice_in_dim(src, j, left0 + right0 + 1, axis=2)
  b, ch2 = from_vs.shape[2:]
  from_v = lambda l: lax.dynamic_slice(from_vs, (j, l, 0, 0), (1, 1, b, ch2))[0, 0, :, None, None]
  h_res, h8 = _horizontal(iprior, 0, a['first'], tables, from_v(0), window, None)
  if a['rest'] is None:
    return _head(a, h8[:, 0, 0]), h_row
  left, right = win[1][1]
  ch = h_row.shape[-1]

  def body(carry, p):
    l, h_res, h8, rows = carry  # rows[l]: layer l's h on this row (the layer below p)
    rows = lax.dynamic_update_slice(rows, h8[None, :, 0], (l, 0, j + left, 0))
    window = lax.dynamic_slice(rows, (l, 0, j, 0), (1, b, left + right + 1, ch))[0][:, None]
    h_res, h8 = _horizontal(iprior, 1, p, tables, from_v(l + 1), window, h_res)
    return (l + 1, h_res, h8, rows), None

  (_, _, h8, h_row), _ = lax.scan(body, (jnp.int32(0), h_res, h8, h_row), a['rest'])
  return _head(a, h8[:, 0, 0]), h_row
