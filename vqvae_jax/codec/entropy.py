"""Entropy coding of code grids with the Gated PixelCNN prior (range coding).

The codes z[0..n) of an h x w grid (raster order) are range-coded, one after
the other, each with the prior's conditional p(z[p] | z[<p], y) turned into an
integer frequency table (`frequencies`), by `constriction`'s RangeEncoder
(32-bit words, 24-bit probabilities). The decoder runs the same prior position
by position, builds the same table from the codes it has decoded so far, and
decodes the next code.

Same probabilities on both sides. The range decoder needs bit-identical tables,
so both sides compute the logits with one program: the prior's cached raster
scan (`sampling`), with an `io_callback` at each position that either records
the logits and returns the known code (encoder) or decodes the code from them
(decoder). The scan always runs on a batch of every class label, in order
(B = num_classes), whatever label is used: the encoder gets the logits of all
labels from one scan (to pick the shortest), and both sides run the same
compiled program on the same inputs. A float difference could still come from
another machine or XLA version; the file's CRC of the codes turns it into an
error instead of a wrong image.

Quantisation (a fixed rule; exact integer arithmetic after the first step).
For each position, with logits l[0..K) in float32:
  1. d[i] = round(64 * (max(l) - l[i])), halves up, capped at 2048 (32 nats):
     the float32 difference is exactly rounded, the rest is exact.
  2. u[i] = W[d[i]] with the table W[d] = round(2^36 * exp(-d / 64)), computed
     once with Python's `decimal` (correctly rounded, the same everywhere).
  3. f[i] = floor(u[i] * (2^24 - K) / sum(u)); the remainder
     2^24 - K - sum(f) goes to the first i with the largest u[i].
  4. The frequency of code i is f[i] + 1 (out of 2^24): every code stays
     codable. `constriction`'s Categorical model given the float weights f
     reproduces exactly these frequencies (its "fast" quantiser computes
     floor(cumsum(f) * 1.0) + i, exact for integers below 2^24).
"""
from __future__ import annotations

import decimal
import functools
import itertools
import logging
import threading

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import io_callback

from vqvae_jax.codec import integer_prior
from vqvae_jax.codec.vqz import FormatError
from vqvae_jax.errors import UserError
from vqvae_jax.models import sampling
from vqvae_jax.models.prior import GatedPixelCNN

PRECISION = 24
STEPS_PER_NAT = 64
MAX_STEPS = 32 * STEPS_PER_NAT
WEIGHT_BITS = 36


@functools.lru_cache(maxsize=1)
def weight_table() -> np.ndarray:
  """W[d] = round(2^36 * exp(-d / 64)) for d in [0, 2048], int64 (exact decimals)."""
  ctx = decimal.Context(prec=40, rounding=decimal.ROUND_HALF_EVEN)
  scale = decimal.Decimal(1 << WEIGHT_BITS)
  return np.array([
      int(ctx.multiply(ctx.exp(ctx.divide(decimal.Decimal(-d), STEPS_PER_NAT)), scale)
          .to_integral_value(rounding=decimal.ROUND_HALF_EVEN))
      for d in range(MAX_STEPS + 1)], np.int64)


def frequencies(logits) -> np.ndarray:
  """logits [..., K] float32 -> integer frequencies [..., K] int64, each >= 1,
  summing to 2^24 along the last axis (the module's quantisation rule)."""
  logits = np.asarray(logits, np.float32)
  if not np.all(np.isfinite(logits)):
    raise ValueError('the prior produced non-finite logits')
  k = logits.shape[-1]
  if not 2 <= k < 1 << PRECISION:
    raise ValueError(f'need 2 <= K < 2^{PRECISION}, got {k}')
  diff = (logits.max(axis=-1, keepdims=True) - logits).astype(np.float64)
  return _tables(np.minimum(np.floor(diff * STEPS_PER_NAT + 0.5), MAX_STEPS).astype(np.int64))


def frequencies_from_logits(logits) -> np.ndarray:
  """Integer logits [..., K] in units of 1/64 nat (`integer_prior`) -> integer
  frequencies [..., K]: the rule above from step 2 on, with d = max(l) - l[i]
  capped at 2048 (exact: no float anywhere but an estimate corrected in
  integers, see `_table_rows`)."""
  logits = np.asarray(logits)
  if logits.dtype.kind not in 'iu':
    raise ValueError(f'integer logits expected, got {logits.dtype}')
  k = logits.shape[-1]
  if not 2 <= k < 1 << PRECISION:
    raise ValueError(f'need 2 <= K < 2^{PRECISION}, got {k}')
  return _by_rows(logits, lambda x: _table_rows(np.minimum(
      x.max(axis=-1, keepdims=True).astype(np.int64) - x, MAX_STEPS)))


ROWS = 128  # rows of K per chunk: the int64 temporaries stay in cache (3x faster than whole arrays)


def _by_rows(x, fn) -> np.ndarray:
  """fn over chunks of ROWS rows of x [..., K] -> int64 [..., K]."""
  flat = x.reshape(-1, x.shape[-1])
  out = np.empty(flat.shape, np.int64)
  for s in range(0, len(flat), ROWS):
    out[s:s + ROWS] = fn(flat[s:s + ROWS])
  return out.reshape(x.shape)


def _tables(steps) -> np.ndarray:
  """Steps d [..., K] int64 in [0, 2048] -> frequencies (steps 2-4 of the rule)."""
  return _by_rows(np.asarray(steps, np.int64), _table_rows)


def _table_rows(steps) -> np.ndarray:
  """Steps d [n, K] -> frequencies [n, K] int64: with w = W[d] and
  free = 2^24 - K, f = floor(w * free / sum(w)), the rounding remainder added
  to the most probable symbol (the first with d = 0: W decreases strictly
  there), plus 1. The quotient is a float64 estimate (within 1 of it: its
  error is below 2^-27) corrected exactly in int64 (w * free < 2^61), so the
  result is the integer division's on every machine."""
  k = steps.shape[-1]
  weights = np.take(weight_table(), steps)
  total = weights.sum(axis=-1, keepdims=True)
  free = (1 << PRECISION) - k
  f = np.floor(weights * (free / total)).astype(np.int64)
  r = weights * free - f * total
  f -= r < 0
  f += r >= total
  rows = np.arange(len(f))
  f[rows, np.argmin(steps, axis=-1)] += free - f.sum(axis=-1)
  return f + 1


def table_bits(freqs, codes) -> np.ndarray:
  """-log2 of the quantised probabilities of `codes`: freqs [..., n, K], codes
  [n] -> [...] bits (the ideal length under the integer tables)."""
  codes = np.asarray(codes).reshape(-1)
  picked = np.take_along_axis(freqs, np.broadcast_to(
      codes[:, None], freqs.shape[:-1] + (1,)), axis=-1)[..., 0]
  return np.sum(PRECISION - np.log2(picked.astype(np.float64)), axis=-1)


# --- the prior's raster scan with a host callback per position ---------------

_HANDLERS: dict[int, object] = {}
_NEXT_ID = itertools.count()
_LOCK = threading.Lock()


def _dispatch(handler_id, position, logits):
  return _HANDLERS[int(handler_id)](int(position), np.asarray(logits))


@functools.partial(jax.jit, static_argnames=('model', 'shape'))
def _scan(model, params, shape, handler_id):
  labels = jnp.arange(model.num_classes, dtype=jnp.int32)
  out = jax.ShapeDtypeStruct(labels.shape, jnp.int32)

  def pick(p, logits, codes):
    del codes
    return io_callback(_dispatch, out, handler_id, p, logits, ordered=True)

  codes, _ = sampling.raster_scan(model, params, labels, shape, pick, record=False)
  return codes


def _run(model, params, shape, handler):
  """Runs the scan with `handler(position, logits [B, K]) -> code` per position."""
  if not isinstance(model, GatedPixelCNN):
    raise TypeError(f'expected a GatedPixelCNN, got {type(model).__name__}')
  b = model.num_classes
  with _LOCK:
    handler_id = next(_NEXT_ID) % (1 << 31)
    _HANDLERS[handler_id] = lambda p, logits: np.full((b,), handler(p, logits), np.int32)
  try:
    return np.asarray(_scan(model, params, tuple(int(s) for s in shape),
                            jnp.int32(handler_id)))
  finally:
    with _LOCK:
      del _HANDLERS[handler_id]


def prior_logits(model: GatedPixelCNN, params, codes) -> np.ndarray:
  """codes [h, w] -> logits [h * w, num_classes, K] float32 of every position
  under every label, computed by the same program as the decoder's."""
  codes = np.asarray(codes, np.int32)
  flat = codes.reshape(-1)
  out = np.zeros((flat.size, model.num_classes, model.num_codes), np.float32)

  def record(p, logits):
    out[p] = logits
    return flat[p]

  _run(model, params, codes.shape, record)
  return out


# --- range coding ------------------------------------------------------------

def _constriction():
  try:
    import constriction  # pylint: disable=g-import-not-at-top  (optional: prior coding only)
  except ImportError as e:
    raise UserError('entropy coding needs the constriction package: '
                    'pip install constriction==0.5.0') from e
  return constriction


def _to_bytes(words) -> bytes:
  data = np.asarray(words, np.uint32).astype('>u4').tobytes()
  strip = min(3, len(data) - len(data.rstrip(b'\0')))
  return data[:len(data) - strip]


def _to_words(payload: bytes) -> np.ndarray:
  padded = payload + b'\0' * (-len(payload) % 4)
  return np.frombuffer(padded, '>u4').astype(np.uint32)


def encode_with_tables(freqs, codes) -> bytes:
  """Range-codes codes [n] with frequency tables freqs [n, K] -> payload."""
  c = _constriction()
  encoder = c.stream.queue.RangeEncoder()
  codes = np.asarray(codes, np.int32).reshape(-1)
  if codes.size:
    encoder.encode(codes, c.stream.model.Categorical(perfect=False),
                   (np.asarray(freqs) - 1).astype(np.float32))
  return _to_bytes(encoder.get_compressed())


def encode(model: GatedPixelCNN, params, codes, label: int | None = None):
  """codes [h, w] -> (payload bytes, label used).

  label None tries every class label and keeps the shortest payload (ties: the
  smallest label)."""
  codes = np.asarray(codes, np.int32)
  freqs = frequencies(prior_logits(model, params, codes)).transpose(1, 0, 2)  # [B, n, K]
  labels = range(model.num_classes) if label is None else [label]
  best = None
  for y in labels:
    payload = encode_with_tables(freqs[y], codes)
    if best is None or len(payload) < len(best[0]):
      best = (payload, y)
  return best


class _StopScan(Exception):
  """Raised in the host callback to abort the scan (the decoder already failed)."""


def _hide_stop_scan(record) -> bool:
  """Logging filter: drops JAX's traceback of our own `_StopScan`."""
  return not (record.exc_info and isinstance(record.exc_info[1], _StopScan))


class _Decoder:
  """Host side of the decoding scan: one code per call. The first range-decoder
  error is kept and the scan aborted at once (an exception in an io_callback
  stops the compiled loop), instead of running the prior over the rest."""

  def __init__(self, payload: bytes, label: int):
    self.constriction = _constriction()
    self.decoder = self.constriction.stream.queue.RangeDecoder(_to_words(payload))
    self.label = label
    self.error = None

  def __call__(self, position, logits):
    del position
    if self.error is not None:
      raise _StopScan()
    try:
      weights = (frequencies(logits[self.label]) - 1).astype(np.float32)
      model = self.constriction.stream.model.Categorical(weights, perfect=False)
      return int(self.decoder.decode(model))
    except Exception as e:  # pylint: disable=broad-except
      self.error = e
      raise _StopScan() from e


def decode(model: GatedPixelCNN, params, payload: bytes, shape, label: int) -> np.ndarray:
  """Inverse of `encode`: payload -> codes [h, w] int32 (FormatError if undecodable)."""
  if not 0 <= label < model.num_classes:
    raise FormatError(f'label {label} is out of range for a prior with '
                      f'{model.num_classes} classes')
  handler = _Decoder(payload, label)
  callback_log = logging.getLogger('jax._src.callback')  # logs a callback's exception
  callback_log.addFilter(_hide_stop_scan)
  try:
    codes = _run(model, params, shape, handler)[0]
  except Exception:  # the callback's _StopScan arrives wrapped in a runtime error
    if handler.error is None:
      raise
    codes = None
  finally:
    callback_log.removeFilter(_hide_stop_scan)
  if handler.error is not None:
    raise FormatError(f'the entropy-coded payload could not be decoded ({handler.error})')
  return codes.astype(np.int32)


def ideal_bits(logits, codes) -> np.ndarray:
  """Sum over positions of -log2 softmax(logits)[code] (float64): the length
  the prior itself assigns. logits [..., n, K], codes [n] -> [...]."""
  logits = np.asarray(logits, np.float64)
  logp = logits - logits.max(axis=-1, keepdims=True)
  logp = logp - np.log(np.exp(logp).sum(axis=-1, keepdims=True))
  codes = np.asarray(codes).reshape(-1)
  picked = np.take_along_axis(logp, np.broadcast_to(
      codes[:, None], logp.shape[:-1] + (1,)), axis=-1)[..., 0]
  return -np.sum(picked, axis=-1) / np.log(2.0)


# --- portable batched coding with the integer prior (format version 2) --------

ENCODE_CHUNK = 64          # grids per whole-grid pass, at most ...
ENCODE_BYTES = 1 << 30     # ... and about this much memory for its logits
SHORTLIST = 2              # labels tried per unlabelled grid, given a label table


def num_candidates(iprior, shortlist: int = SHORTLIST) -> int:
  """How many labels the encoder tries per unlabelled grid: the shortlist
  given the prior's label table, else every label."""
  if integer_prior.LABEL_TABLE not in iprior.arrays:
    return iprior.num_classes
  return min(shortlist, iprior.num_classes)


def label_candidates(iprior, codes, shortlist: int = SHORTLIST) -> np.ndarray:
  """The labels to try for unlabelled grids codes [B, h, w]: [B, n] int32
  (n = `num_candidates`), the best under the prior's label table (bag of
  codes, ties to the smaller label), or every label, in order, without one."""
  b, c, n = len(codes), iprior.num_classes, num_candidates(iprior, shortlist)
  if n == c:
    return np.tile(np.arange(c, dtype=np.int32), (b, 1))
  table = np.asarray(iprior.arrays[integer_prior.LABEL_TABLE], np.float64)
  scores = table[:, np.asarray(codes).reshape(b, -1)].sum(axis=-1).T  # [B, classes]
  return np.argsort(-scores, axis=1, kind='stable')[:, :n].astype(np.int32)


@functools.partial(jax.jit, static_argnums=0)
def _best_labels(iprior, arrays, codes, candidates):
  """codes [B, h, w], candidates [B, n] labels -> (labels [B] int32, among each
  grid's candidates the one whose integer logits give the fewest ideal bits,
  and those logits [B, h, w, K] int32): one pass over every candidate.

  The choice uses float log-softmax of the integer logits; it only affects the
  length of the file, never what the decoder computes."""
  b, n = candidates.shape
  every = integer_prior.logits(iprior, arrays, jnp.repeat(codes, n, axis=0),
                               candidates.reshape(-1))
  logp = jax.nn.log_softmax(every.astype(jnp.float32) / STEPS_PER_NAT, axis=-1)
  picked = jnp.take_along_axis(logp, jnp.repeat(codes, n, axis=0)[..., None], axis=-1)
  nats = -jnp.sum(picked, axis=(1, 2, 3)).reshape(b, n)
  pick = jnp.argmin(nats, axis=1)
  rows = jnp.arange(b)
  return candidates[rows, pick], every.reshape((b, n) + every.shape[1:])[rows, pick]


def integer_logits(iprior, arrays, codes, labels=None, shortlist: int = SHORTLIST):
  """codes [B, h, w] int, labels [B] int or None (choose each among
  `label_candidates`) -> (labels [B] int32, logits [B, h, w, K] int32) of the
  integer prior (teacher forcing)."""
  codes = jnp.asarray(codes, jnp.int32)
  if labels is None:
    candidates = label_candidates(iprior, np.asarray(codes), shortlist)
    return _best_labels(iprior, arrays, codes, jnp.asarray(candidates))
  labels = jnp.asarray(labels, jnp.int32)
  return labels, integer_prior.logits(iprior, arrays, codes, labels)


def encode_batch(iprior, arrays, codes, labels=None,
                 shortlist: int = SHORTLIST) -> list[tuple[bytes, int]]:
  """Range-codes grids with the integer prior.

  codes: [B, h, w] int in [0, K); labels: [B] ints, or None to give each grid
  the label with the shortest code among its `label_candidates` (`shortlist`
  of them; all labels if the prior has no label table);
  arrays = `integer_prior.device_arrays`. Returns [(payload, label)] * B.
  Inverse: `decode_batch`.
  """
  codes = np.asarray(codes, np.int32)
  out = []
  tried = num_candidates(iprior, shortlist) if labels is None else 1
  per_grid = 8 * tried * codes[0].size * iprior.num_codes if len(codes) else 1
  step = max(1, min(ENCODE_CHUNK, ENCODE_BYTES // per_grid))
  def launch(start):  # the prior's pass over one chunk, dispatched without waiting
    chunk = codes[start:start + step]
    part = None if labels is None else np.asarray(labels)[start:start + step]
    return chunk, integer_logits(iprior, arrays, chunk, part, shortlist)

  starts = list(range(0, len(codes), step))
  pending = launch(starts[0]) if starts else None
  for n in range(len(starts)):
    chunk, (used, logits) = pending
    # The next chunk's pass runs on the device while this one is range-coded.
    pending = launch(starts[n + 1]) if n + 1 < len(starts) else None
    freqs = frequencies_from_logits(np.asarray(logits))
    freqs = freqs.reshape(len(chunk), -1, freqs.shape[-1])
    out.extend((encode_with_tables(f, c), int(y))
               for f, c, y in zip(freqs, chunk, np.asarray(used)))
  return out


def decode_batch(iprior, arrays, payloads, shape, labels):
  """Inverse of `encode_batch` for grids of one shape.

  payloads: B byte strings, shape: (h, w), labels: [B] ints -> (codes
  [B, h, w] int32, errors: B entries, None or the message of the range
  decoder's first error; a failed grid stops there and keeps zeros).
  """
  c = _constriction()
  h, w = (int(s) for s in shape)
  b = len(payloads)
  labels = np.asarray(labels, np.int32).reshape(b)
  if b and (labels.min() < 0 or labels.max() >= iprior.num_classes):
    raise FormatError(f'labels must be in [0, {iprior.num_classes}), got {labels.tolist()}')
  decoders = [c.stream.queue.RangeDecoder(_to_words(p)) for p in payloads]
  errors = [None] * b
  codes = np.zeros((b, h, w), np.int32)
  if b == 0 or h * w == 0:
    return codes, errors
  dev_labels = jnp.asarray(labels)
  v_cache, h_row, from_vs = integer_prior.init_caches(iprior, b, (h, w))
  for i in range(h):
    from_vs, v_cache = integer_prior.row_step(iprior, arrays, codes, v_cache, from_vs,
                                             jnp.int32(i), dev_labels)
    for j in range(w):
      logits, h_row = integer_prior.position_step(iprior, arrays, codes, from_vs, h_row,
                                                  jnp.int32(i), jnp.int32(j), dev_labels)
      weights = (frequencies_from_logits(np.asarray(logits)) - 1).astype(np.float32)
      for n, decoder in enumerate(decoders):
        if errors[n] is None:
          try:
            codes[n, i, j] = decoder.decode(c.stream.model.Categorical(weights[n], perfect=False))
          except Exception as e:  # pylint: disable=broad-except
            errors[n] = f'{type(e).__name__}: {e}'
      if all(e is not None for e in errors):
        return codes, errors
  return codes, errors
