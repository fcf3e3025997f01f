"""Image <-> codes <-> bitstream: vqvae-jax as an image codec.

An image [H, W, C] uint8 is padded to a multiple of 4 (edge pixels repeated),
encoded by the VQ-VAE to a code grid [ceil(H/4), ceil(W/4)], and the codes are
stored in a `.vqz` file (`vqz`) either
  * 'fixed': ceil(log2 K) bits per code, no prior needed, or
  * 'prior': range-coded with the class-conditional PixelCNN prior
    (`entropy`); an unlabelled image gets the label whose payload is
    shortest, and the label is stored.
New files are format version 2; version 1 files are read too. Decompression
decodes the codes, runs the VQ-VAE decoder and crops back to H x W. Everything
needs only the model folders (`load_codec`; `registry` finds them from a
file's fingerprint).

Bounded work: before entropy decoding, the grid must fit the payload
(`vqz.check_bound`) and the prior's scan must fit PRIOR_MEMORY_BUDGET
(`prior_memory`); the encoder refuses what the decoder would refuse.
"""
from __future__ import annotations

import dataclasses
import functools
import math
import os
import warnings

import jax
import numpy as np
from PIL import Image, UnidentifiedImageError

from vqvae_jax import checkpoints, evaluation, runs
from vqvae_jax.codec import entropy, integer_prior, vqz
from vqvae_jax.codec.vqz import Binding, FIXED, FormatError, Header, HeaderV2, PRIOR
from vqvae_jax.errors import UserError
from vqvae_jax.models import sampling
from vqvae_jax.models.vqvae import VQVAE

METHODS = {'fixed': FIXED, 'prior': PRIOR}
_NO_FINGERPRINT = bytes(vqz.FINGERPRINT_BYTES)
# Entropy decoding runs the prior once per code: refuse absurd grids (a crafted
# header) instead of running out of memory; 2^22 codes is an 8192 x 8192 image,
# and the prior's caches must fit the memory budget.
MAX_PRIOR_CODES = 1 << 22
PRIOR_MEMORY_BUDGET = 2 << 30


def fingerprint(variables) -> bytes:
  """4 bytes: the start of the sha256 of every parameter leaf in tree order
  (the prior's `vqvae_fingerprint` is the first 8 bytes of it, in hex)."""
  return checkpoints.params_digest(variables)[:vqz.FINGERPRINT_BYTES]


@dataclasses.dataclass(frozen=True)
class Codec:
  """A VQ-VAE (+ optional prior) ready to compress; see `load_codec`."""
  model: VQVAE
  variables: dict
  class_names: tuple
  model_fingerprint: bytes
  prior: object = None
  prior_params: dict | None = None
  prior_fingerprint: bytes = _NO_FINGERPRINT   # of the float prior (version-1 files)
  coder: integer_prior.IntegerPrior | None = None  # the prior for coding (version 2)
  coder_arrays: dict | None = None

  @property
  def coder_fingerprint(self) -> bytes:
    if self.coder is None:
      return _NO_FINGERPRINT
    return self.coder.fingerprint[:vqz.FINGERPRINT_BYTES]

  @property
  def channels(self) -> int:
    return self.model.channels

  @property
  def k(self) -> int:
    return self.model.k

  def binding(self, method: int) -> Binding:
    """What a version-2 file of this method takes from the model."""
    prior_fp = self.coder_fingerprint if method == PRIOR else _NO_FINGERPRINT
    return Binding(self.model_fingerprint, prior_fp, self.k, self.channels)

  def pair_fingerprint(self, method: int) -> bytes:
    """The 2-byte fingerprint version-2 files of this method carry."""
    return vqz.pair_fingerprint(self.model_fingerprint,
                                         self.binding(method).prior_fingerprint)


def load_codec(model_dir: str | None = None, prior_dir: str | None = None) -> Codec:
  """Restores the VQ-VAE (and prior) from their output folders.

  With only `prior_dir`, the VQ-VAE is the one the prior was trained on. The
  prior must have been trained on this VQ-VAE's codes (fingerprints checked).
  """
  prior = prior_params = prior_meta = None
  if prior_dir:
    prior, prior_params, prior_meta = runs.restore_prior(prior_dir)
    model_dir = model_dir or prior_meta['config']['model']
  if not model_dir:
    raise UserError('--model (the VQ-VAE folder) or --prior is required')
  model, variables, meta = runs.restore_vqvae(model_dir)
  if prior_meta is not None:
    runs.check_prior_matches(prior_meta, variables, prior_dir, model_dir)
  coder = load_coder(prior_dir, prior, prior_params, prior_meta['grid']) if prior else None
  return make_codec(model, variables, meta['class_names'], prior, prior_params, coder)


def make_codec(model, variables, class_names, prior=None, prior_params=None,
               coder=None) -> Codec:
  """A Codec from restored models; `coder` (the integer prior) is required
  with a prior (`load_coder`, or `integer_prior.quantize`)."""
  if prior is not None and coder is None:
    raise ValueError('a prior needs its integer coder')
  return Codec(model=model, variables=variables, class_names=tuple(class_names),
               model_fingerprint=fingerprint(variables), prior=prior, prior_params=prior_params,
               prior_fingerprint=fingerprint(prior_params) if prior else _NO_FINGERPRINT,
               coder=coder, coder_arrays=integer_prior.device_arrays(coder) if coder else None)


CODER_FILE = 'integer_prior.npz'
CALIBRATION_GRIDS = 512


def load_coder(prior_dir: str, prior, params, grid) -> integer_prior.IntegerPrior:
  """The integer prior of a prior folder (`<prior_dir>/integer_prior.npz`).

  Made once from the float prior, calibrated on the first training code grids
  (`codes/train.npz`, else grids sampled from the prior with seed 0), and saved
  beside the checkpoints: files are coded with the saved integer model, so the
  conversion need not be reproducible, only the integer arithmetic. A saved
  model of other float parameters is replaced. Where the training grids are
  there, the saved model also gets the label table that lets the encoder try
  only a shortlist of labels (`entropy.label_candidates`); that changes no
  fingerprint and no file's decoding.
  """
  path = os.path.join(prior_dir, CODER_FILE)
  source = np.frombuffer(checkpoints.params_digest(params), np.uint8)
  has_train = os.path.exists(_train_path(prior_dir))
  coder = None
  if os.path.exists(path):
    try:
      coder = integer_prior.load(path)
    except (OSError, ValueError, KeyError) as e:
      raise UserError(f'{path} is not a readable integer prior ({e}); delete it to '
                      'rebuild it from the checkpoint') from e
    if not np.array_equal(coder.arrays.get('source'), source):
      coder = None
    elif integer_prior.LABEL_TABLE in coder.arrays or not has_train:
      return coder
  train = _train_codes(prior_dir) if has_train else None
  if coder is None:
    codes, labels = (train[0][:CALIBRATION_GRIDS], train[1][:CALIBRATION_GRIDS]) if train \
        else _sampled_grids(prior, params, grid)
    coder = integer_prior.quantize(prior, params, codes, labels)
    coder = dataclasses.replace(coder, arrays=dict(coder.arrays, source=source))
  if train:
    coder = integer_prior.with_label_table(coder, *train)
  try:
    integer_prior.save(coder, path)
  except OSError as e:
    warnings.warn(f'could not save the integer prior to {path} ({e}); files coded now '
                  'decode only where the same conversion is made')
  return coder


def _train_path(prior_dir):
  return os.path.join(prior_dir, 'codes', 'train.npz')


def _train_codes(prior_dir):
  """The training grids of a prior folder: (codes [N, h, w], labels [N])."""
  with np.load(_train_path(prior_dir)) as f:
    return f['codes'], f['labels']


def _sampled_grids(prior, params, grid):
  """64 grids sampled from the prior (seed 0), to calibrate on without training codes."""
  labels = np.arange(64) % prior.num_classes
  codes = sampling.sample_codes(prior, params, labels, tuple(grid), jax.random.key(0))
  return np.asarray(codes), labels


def resolve_label(codec: Codec, label) -> int | None:
  """A class name or index (str or int) -> index; None stays None."""
  if label is None:
    return None
  names = list(codec.class_names)
  if str(label) in names:
    return names.index(str(label))
  try:
    index = int(label)
  except ValueError:
    index = -1
  if not 0 <= index < len(names):
    raise UserError(f'unknown label {label!r}: use a class index 0..{len(names) - 1} or '
                    f'one of {", ".join(names)}')
  return index


# --- images ------------------------------------------------------------------

def load_image(path: str, channels: int) -> np.ndarray:
  """Reads an image file as uint8 [H, W, channels]; UserError if it is not
  grayscale for a 1-channel model or colour for a 3-channel one."""
  try:
    with Image.open(path) as im:
      im.load()
      mode, bands = im.mode, im.getbands()
      if mode in ('I', 'I;16', 'I;16B', 'I;16L', 'I;16N', 'F'):
        raise UserError(f'{path} has {mode} pixels (more than 8 bits); the codec takes 8-bit '
                        'grayscale or RGB images: convert it first')
      rgba = np.asarray(im.convert('RGBA'))
  except (OSError, UnidentifiedImageError, ValueError) as e:
    raise UserError(f'cannot read image {path}: {e}') from e
  if 'A' in bands and np.any(rgba[..., 3] != 255):
    raise UserError(f'{path} has transparent pixels; flatten it onto a background first')
  rgb = rgba[..., :3]
  gray = bool(np.all(rgb[..., :1] == rgb[..., 1:]))
  if channels == 3:
    if gray and mode not in ('RGB', 'RGBA', 'P'):
      raise UserError(f'this model takes colour (RGB) images, but {path} is grayscale '
                      f'({mode}); convert it to RGB first')
    return np.ascontiguousarray(rgb)
  if not gray:
    raise UserError(f'this model takes grayscale images, but {path} is in colour ({mode}); '
                    'convert it to grayscale first')
  return np.ascontiguousarray(rgb[..., :1])


def check_image(codec: Codec, image) -> np.ndarray:
  image = np.asarray(image)
  if image.ndim == 2:
    image = image[..., None]
  if image.dtype != np.uint8 or image.ndim != 3:
    raise UserError(f'images must be uint8 [H, W, C], got {image.dtype} {image.shape}')
  if image.shape[-1] != codec.channels:
    raise UserError(f'this model takes {codec.channels}-channel images, got '
                    f'{image.shape[-1]} channels')
  if not (0 < image.shape[0] < 1 << 16 and 0 < image.shape[1] < 1 << 16):
    raise UserError(f'image size must be 1..65535 pixels per side, got {image.shape[:2]}')
  return image


def pad_image(image: np.ndarray) -> np.ndarray:
  """[H, W, C] -> [4 * ceil(H/4), 4 * ceil(W/4), C], repeating the edge pixels."""
  gh, gw = vqz.grid_shape(*image.shape[:2])
  d = vqz.DOWNSAMPLING
  return np.pad(image, ((0, gh * d - image.shape[0]), (0, gw * d - image.shape[1]), (0, 0)),
                mode='edge')


@functools.partial(jax.jit, static_argnames=('model',))
def _encode(model, variables, images):
  return model.apply(variables, images.astype(np.float32) / 127.5 - 1.0, method=VQVAE.encode)


@functools.partial(jax.jit, static_argnames=('model',))
def _decode(model, variables, codes):
  x = model.apply(variables, codes, method=VQVAE.decode)
  return jax.numpy.clip(jax.numpy.round((x + 1.0) * 127.5), 0, 255).astype(np.uint8)


def encode_images(codec: Codec, images) -> np.ndarray:
  """uint8 [B, H, W, C] (H, W multiples of 4) -> codes [B, H/4, W/4] int32."""
  return np.asarray(_encode(codec.model, codec.variables, np.asarray(images)))


def decode_codes(codec: Codec, codes) -> np.ndarray:
  """codes [B, h, w] in [0, K) -> uint8 images [B, 4h, 4w, C]."""
  codes = np.asarray(codes)
  if codes.ndim != 3 or not np.issubdtype(codes.dtype, np.integer):
    raise UserError(f'codes must be integers [B, h, w], got {codes.dtype} {codes.shape}')
  if codes.size and (codes.min() < 0 or codes.max() >= codec.k):
    raise UserError(f'codes must be in [0, {codec.k}), got [{codes.min()}, {codes.max()}]')
  return np.asarray(_decode(codec.model, codec.variables, codes.astype(np.int32)))


def psnr(a, b) -> float:
  """Peak signal-to-noise ratio in dB of two uint8 images (inf if equal)."""
  mse = np.mean(np.square(np.asarray(a, np.float64) - np.asarray(b, np.float64)))
  return math.inf if mse == 0 else float(evaluation.psnr_from_mse(mse, data_range=255.0))


# --- files -------------------------------------------------------------------

def prior_memory(prior, num_codes: int) -> int:
  """An upper estimate of the bytes the prior's coding scan allocates for a grid
  of `num_codes` codes: per class label, a float32 cache of every layer's
  activations over the grid plus its embedding and the codes."""
  per_code = prior.num_classes * 4 * (prior.hidden * (prior.num_layers + 1) + 2)
  return per_code * num_codes


def _check_prior_work(codec: Codec, grid, name: str) -> None:
  """UserError if entropy coding a grid would exceed the code or memory limits."""
  n = grid[0] * grid[1]
  need = prior_memory(codec.prior, n)
  if n > MAX_PRIOR_CODES or need > PRIOR_MEMORY_BUDGET:
    raise UserError(f'{name} has a {grid[0]}x{grid[1]} code grid: entropy coding it with '
                    f'this prior would take about {need / 2**30:.1f} GiB (limits: '
                    f'{MAX_PRIOR_CODES} codes, {PRIOR_MEMORY_BUDGET / 2**30:.0f} GiB); '
                    'use --method fixed for images this large')


@dataclasses.dataclass(frozen=True)
class Compressed:
  """One compressed image: the file bytes, its codes, label and decoded image
  with its PSNR (None when compressed with reconstruct=False)."""
  data: bytes
  header: Header | HeaderV2
  codes: np.ndarray
  reconstruction: np.ndarray | None
  psnr: float | None

  @property
  def bits_per_pixel(self) -> float:
    return 8.0 * len(self.data) / (self.header.height * self.header.width)


BATCH = 256  # images per VQ-VAE / prior batch
DECODE_BATCH = 1024  # grids per batch of the incremental decoder (per-call costs amortised)


def _batched(fn, x, chunk: int = BATCH):
  """fn over x [N, ...] in chunks padded to a power of two (few compiles) -> [N, ...]."""
  out = []
  for start in range(0, len(x), chunk):
    part = x[start:start + chunk]
    size = 1 << max(0, (len(part) - 1).bit_length())
    padded = np.concatenate([part, np.repeat(part[-1:], size - len(part), axis=0)])
    out.append(np.asarray(fn(padded))[:len(part)])
  return np.concatenate(out) if out else np.zeros((0,))


def _groups(shapes):
  """{shape: [indices]} in first-seen order."""
  out = {}
  for i, shape in enumerate(shapes):
    out.setdefault(tuple(shape), []).append(i)
  return out


def _prior_payloads(codec: Codec, grids, labels) -> list[tuple[bytes, int]]:
  """Code grids [h, w] (any shapes) and labels (int or None each) -> [(payload,
  label)], coded with the integer prior in one batch per shape and label mode."""
  out = [None] * len(grids)
  keys = [(g.shape, labels[i] is None) for i, g in enumerate(grids)]
  for (shape, auto), idx in _groups(keys).items():
    batch = np.stack([grids[i] for i in idx])
    coded = entropy.encode_batch(codec.coder, codec.coder_arrays, batch,
                                      None if auto else [labels[i] for i in idx])
    for i, (payload, label) in zip(idx, coded):
      # Zero bytes past the end change nothing the range decoder reads
      # (codec/vqz.py: bounded work).
      out[i] = (payload.ljust(vqz.min_prior_payload(int(np.prod(shape))), b'\0'),
                label)
  return out


def _pack(codec: Codec, method: str, codes, image_size, coded) -> bytes:
  if method == 'prior':
    payload, label = coded
  else:
    payload, label = vqz.pack_fixed(codes, codec.k), coded
  return vqz.pack_v2(METHODS[method], image_size, label,
                              codec.binding(METHODS[method]), payload, codes)


def _check_method(codec: Codec, method: str) -> None:
  if method not in METHODS:
    raise UserError(f'method must be one of {", ".join(METHODS)}, got {method!r}')
  if method == 'prior' and codec.prior is None:
    raise UserError("method 'prior' needs a prior (--prior)")


def compress_codes(codec: Codec, codes, image_size, method: str = 'prior',
                   label=None) -> bytes:
  """Code grid [h, w] of an image of size (H, W) -> the bytes of a .vqz file."""
  _check_method(codec, method)
  codes = np.asarray(codes, np.int32)
  label = resolve_label(codec, label)
  if codes.shape != vqz.grid_shape(*image_size):
    raise UserError(f'a {codes.shape} code grid does not belong to a {tuple(image_size)} image')
  coded = label
  if method == 'prior':
    _check_prior_work(codec, codes.shape, 'the image')
    coded = _prior_payloads(codec, [codes], [label])[0]
  return _pack(codec, method, codes, image_size, coded)


def compress_batch(codec: Codec, images, method: str = 'prior', label=None,
                   reconstruct: bool = True) -> list:
  """Many images [H, W, C] uint8 (any sizes) -> one Compressed or UserError
  each (a bad image fails alone); the VQ-VAE and the prior run in batches.
  reconstruct=False skips decoding the codes (no reconstruction or PSNR):
  about a third of the work."""
  _check_method(codec, method)
  label = resolve_label(codec, label)
  results = [None] * len(images)
  good = {}
  for i, image in enumerate(images):
    try:
      image = check_image(codec, image)
      if method == 'prior':
        _check_prior_work(codec, vqz.grid_shape(*image.shape[:2]), f'image {i}')
      good[i] = image
    except UserError as e:
      results[i] = e
  order = list(good)
  codes, recon = {}, {}
  for _, members in _groups([good[i].shape for i in order]).items():
    idx = [order[n] for n in members]
    grid = _batched(lambda x: _encode(codec.model, codec.variables, x),
                    np.stack([pad_image(good[i]) for i in idx]))
    image = (_batched(lambda c: _decode(codec.model, codec.variables, c), grid)
             if reconstruct else None)
    for n, i in enumerate(idx):
      codes[i] = grid[n]
      recon[i] = None if image is None else image[n][:good[i].shape[0], :good[i].shape[1]]
  order = list(good)
  coded = ([label] * len(order) if method == 'fixed' else
           _prior_payloads(codec, [codes[i] for i in order], [label] * len(order)))
  for i, c in zip(order, coded):
    data = _pack(codec, method, codes[i], good[i].shape[:2], c)
    header, _ = vqz.unpack(data)
    results[i] = Compressed(data, header, codes[i], recon[i],
                            None if recon[i] is None else psnr(good[i], recon[i]))
  return results


def compress(codec: Codec, image, method: str = 'prior', label=None) -> Compressed:
  """uint8 [H, W, C] -> Compressed (file bytes, codes, decoded image, PSNR)."""
  result = compress_batch(codec, [image], method, label)[0]
  if isinstance(result, UserError):
    raise result
  return result


def read_codes_batch(codec: Codec, datas, names=None) -> list:
  """File bytes (version 1 or 2) -> one (header, codes [h, w]) or UserError
  each; entropy-coded version-2 files of one grid shape decode in one batch."""
  names = names or [f'file {i}' for i in range(len(datas))]
  results, pending = [None] * len(datas), {}
  for i, (data, name) in enumerate(zip(datas, names)):
    try:
      header, payload = vqz.unpack(data, name)
      if header.version == 1:
        results[i] = header, _read_codes_v1(codec, header, payload, name)
        continue
      _check_v2_model(codec, header, name)
      if header.method == FIXED:
        results[i] = header, _checked(codec, header, payload,
                                      vqz.unpack_fixed(payload, header.grid, codec.k),
                                      name)
      else:
        _check_prior_work(codec, header.grid, name)
        pending[i] = header, payload
    except UserError as e:
      results[i] = e
  for grid, idx in _groups([pending[i][0].grid for i in pending]).items():
    idx = [list(pending)[n] for n in idx]
    fits = PRIOR_MEMORY_BUDGET // prior_memory(codec.prior, grid[0] * grid[1])
    step = max(1, min(DECODE_BATCH, fits))
    for start in range(0, len(idx), step):
      part = idx[start:start + step]
      codes, errors = entropy.decode_batch(
          codec.coder, codec.coder_arrays, [pending[i][1] for i in part], grid,
          [pending[i][0].label for i in part])
      for n, i in enumerate(part):
        header, payload = pending[i]
        try:
          if errors[n] is not None:
            raise FormatError(f'the entropy-coded payload of {names[i]} could not be '
                              f'decoded ({errors[n]})')
          results[i] = header, _checked(codec, header, payload, codes[n], names[i])
        except UserError as e:
          results[i] = e
  return results


def _check_v2_model(codec: Codec, header, name: str) -> None:
  """UserError unless this codec can decode the version-2 file."""
  if header.method == PRIOR and codec.prior is None:
    raise UserError(f'{name} is entropy-coded with a prior: pass --prior')
  if header.fingerprint != codec.pair_fingerprint(header.method):
    what = 'VQ-VAE and prior' if header.method == PRIOR else 'VQ-VAE'
    raise UserError(f'{name} was compressed with another model (fingerprint '
                    f'{header.fingerprint.hex()}; this {what} is '
                    f'{codec.pair_fingerprint(header.method).hex()}): pass the --model / '
                    '--prior it was made with')
  if header.method == PRIOR and header.label is None:
    raise FormatError(f'{name} is entropy-coded but stores no label')
  if header.method == PRIOR and not 0 <= header.label < codec.coder.num_classes:
    raise FormatError(f'{name} stores label {header.label}, but the prior has '
                      f'{codec.coder.num_classes} classes')


def _checked(codec: Codec, header, payload, codes, name):
  vqz.check_v2(header, codec.binding(header.method), payload, codes, name)
  return codes


def read_codes(codec: Codec, data: bytes,
               name: str = 'the file') -> tuple[Header | HeaderV2, np.ndarray]:
  """File bytes (version 1 or 2) -> (header, codes [h, w]) after every check
  (FormatError / UserError: wrong model, missing prior, corrupted payload)."""
  result = read_codes_batch(codec, [data], [name])[0]
  if isinstance(result, UserError):
    raise result
  return result


def _read_codes_v1(codec: Codec, header: Header, payload: bytes, name: str) -> np.ndarray:
  """The model checks and decoding of a version-1 file (the float prior's scan)
  -> codes [h, w]."""
  if header.model_fingerprint != codec.model_fingerprint:
    raise UserError(f'{name} was compressed with another VQ-VAE (fingerprint '
                    f'{header.model_fingerprint.hex()}, this one is '
                    f'{codec.model_fingerprint.hex()}): pass the --model it was made with')
  if header.channels != codec.channels or header.k != codec.k:
    raise FormatError(f'{name} is not valid for this model: {header.channels} channels and '
                      f'K = {header.k}, the model has {codec.channels} and {codec.k}')
  if header.method == FIXED:
    codes = vqz.unpack_fixed(payload, header.grid, header.k)
  else:
    if codec.prior is None:
      raise UserError(f'{name} is entropy-coded with a prior: pass --prior')
    if header.prior_fingerprint != codec.prior_fingerprint:
      raise UserError(f'{name} was compressed with another prior (fingerprint '
                      f'{header.prior_fingerprint.hex()}, this one is '
                      f'{codec.prior_fingerprint.hex()}): pass the --prior it was made with')
    if header.label is None:
      raise FormatError(f'{name} is entropy-coded but stores no label')
    _check_prior_work(codec, header.grid, name)
    codes = entropy.decode(codec.prior, codec.prior_params, payload, header.grid,
                                header.label)
  if vqz.codes_crc(codes) != header.codes_crc:
    raise FormatError(f'the codes decoded from {name} do not match its CRC: the prior '
                      'computes other probabilities here than where the file was made '
                      '(another machine or library version?) or the file is corrupted')
  return codes


def _crop(image, header) -> np.ndarray:
  return image[:header.height, :header.width]


def decode_files(codec: Codec, datas, names=None) -> list:
  """File bytes -> one (header, codes [h, w], uint8 image [H, W, C] of the
  original size) or UserError each, decoded in batches."""
  results = read_codes_batch(codec, datas, names)
  ok = [i for i, r in enumerate(results) if not isinstance(r, UserError)]
  for _, idx in _groups([results[i][1].shape for i in ok]).items():
    idx = [ok[n] for n in idx]
    images = _batched(lambda c: _decode(codec.model, codec.variables, c),
                      np.stack([results[i][1] for i in idx]).astype(np.int32))
    for n, i in enumerate(idx):
      header, codes = results[i]
      results[i] = header, codes, _crop(images[n], header)
  return results


def decode_file(codec: Codec, data: bytes, name: str = 'the file'):
  """File bytes -> (header, codes [h, w], uint8 image [H, W, C] of the original size)."""
  result = decode_files(codec, [data], [name])[0]
  if isinstance(result, UserError):
    raise result
  return result


def decompress(codec: Codec, data: bytes, name: str = 'the file') -> np.ndarray:
  """File bytes -> uint8 image [H, W, C] (the original size)."""
  return decode_file(codec, data, name)[2]


def info(data: bytes, name: str = 'the file') -> dict:
  """The header of a file as a dict, plus sizes; needs no model. FormatError if
  the payload cannot hold the grid (`vqz.check_bound`)."""
  header, payload = vqz.unpack(data, name)
  out = header.describe()
  out.update(file_bytes=len(data), header_bytes=len(data) - len(payload),
             payload_bytes=len(payload),
             bits_per_pixel=8.0 * len(data) / (header.height * header.width))
  if header.method == FIXED:
    out['bits_per_code'] = vqz.fixed_code_bits(header, len(payload))
  return out
