"""The compressed-image file format (`.vqz`), versions 2 (written) and 1 (read).

Version 2: a header of 8 bytes for a square image (9 otherwise; more for labels
above 14 or sides above 127 pixels), then the payload. Varints are unsigned
LEB128 (7 bits a byte, least significant group first, minimal length).

  size    field
  1       magic 0x56 ('V')
  1       0xA0 | format version (0xA2)
  varint  mode = (label + 1) << 3 | square << 2 | method; label + 1 = 0: none;
          method 0 fixed-length, 1 entropy-coded with the prior (2, 3 reserved);
          square = 1: W = H and W is not stored
  varint  original image height H (1..65535)
  varint  original image width W (only if square = 0; then W != H)
  2       model fingerprint: the first 2 bytes of sha256(b'vqz2' + VQ-VAE
          fingerprint + prior fingerprint) (`pair_fingerprint`; 4 zero bytes in
          place of the prior's for method 0)
  2       CRC-16/CCITT (`binascii.crc_hqx`, initial 0xFFFF) of: the header bytes
          before it, the VQ-VAE and prior fingerprints (4 + 4 bytes), K,
          channels, h and w (4 bytes each), the payload, and the h * w decoded
          codes (raster, 4 bytes each); integers big-endian
  ...     payload, as in version 1

The code grid h x w = ceil(H / 4) x ceil(W / 4) is derived, never stored; K and
the channel count come from the model, which the fingerprint names and the CRC
binds: a wrong model (even one whose 2-byte fingerprint collides), a transposed
or resized grid, another label, a corrupted payload or a decoder that rebuilt
other codes all fail the CRC, so a wrong image is never written silently. For
28 x 28 grayscale Fashion-MNIST with a label: 'V', 0xA2, mode, 28, fingerprint,
CRC = 8 bytes (version 1: 35).

Version 1 (read only): a 35-byte header, integers big-endian.

  offset  size  field
  0       4     magic b'VQVZ'
  4       1     format version (1)
  5       1     coding method: 0 fixed-length, 1 entropy-coded with the prior
  6       1     image channels (1 or 3)
  7       4     VQ-VAE fingerprint (first 4 bytes of the sha256 of its variables)
  11      4     prior fingerprint (zeros for method 0)
  15      2     original image height H
  17      2     original image width W
  19      2     code grid height h = ceil(H / 4)
  21      2     code grid width w = ceil(W / 4)
  23      2     K, the codebook size
  25      2     class label used (0xFFFF: none)
  27      4     CRC-32 of the code grid (h * w codes as big-endian uint16, raster)
  31      4     checksum: CRC-32 of header bytes 0..30 followed by the payload
  35      ...   payload

Payload of method 0: the h * w codes in raster order, ceil(log2 K) bits each,
most significant bit first, zero-padded to a whole byte. Payload of method 1:
the range coder's 32-bit words, big-endian, with trailing zero bytes removed
(`entropy`); the decoder reads zeros past the end, so a writer may append
zero bytes without changing what decodes.

Bounded work (both versions, checked by `unpack` before anything is decoded):
a fixed-length payload must have exactly the length of h * w codes (version 2:
for some code size of 1..32 bits); a prior-coded file holds at most
FREE_CODES + CODES_PER_PAYLOAD_BIT * (8 * payload bytes) codes, i.e. its codes
average at least 1/16 bit beyond the first 1024. The writer pads a payload that
would be shorter (`min_prior_payload`; only near-constant images of more than
1024 codes need it), so a forged header claiming a huge grid behind a short
payload is refused at once. The decoder adds a memory budget (`compression`).
"""
from __future__ import annotations

import binascii
import dataclasses
import hashlib
import struct
import zlib

import numpy as np

from vqvae_jax.errors import UserError

MAGIC = b'VQVZ'  # version 1
VERSION = 2  # what new files are written as
MAGIC_V2 = 0x56
VERSION_TAG = 0xA0  # byte 1 = VERSION_TAG | version
FIXED, PRIOR = 0, 1
METHOD_NAMES = {FIXED: 'fixed', PRIOR: 'prior'}
NO_LABEL = 0xFFFF
DOWNSAMPLING = 4
FINGERPRINT_BYTES = 4
PAIR_FINGERPRINT_BYTES = 2
MAX_SIDE = 65535
FREE_CODES = 1024
CODES_PER_PAYLOAD_BIT = 16
_FIELDS = struct.Struct('>4sBBB4s4sHHHHHHI')
_CHECKSUM = struct.Struct('>I')
HEADER_SIZE_V1 = _FIELDS.size + _CHECKSUM.size  # 35
_V2_TAIL = PAIR_FINGERPRINT_BYTES + 2  # fingerprint + CRC-16


class FormatError(UserError):
  """A file that is not a valid compressed image (truncated, corrupted, ...)."""


@dataclasses.dataclass(frozen=True)
class Header:
  """The header fields of a version-1 file (see the module docstring)."""
  method: int
  channels: int
  model_fingerprint: bytes
  prior_fingerprint: bytes
  height: int
  width: int
  grid_height: int
  grid_width: int
  k: int
  label: int | None
  codes_crc: int
  version: int = 1

  @property
  def grid(self) -> tuple[int, int]:
    return self.grid_height, self.grid_width

  def describe(self) -> dict:
    """The fields as a JSON-friendly dict (fingerprints in hex)."""
    return {'version': self.version, 'method': METHOD_NAMES[self.method],
            'channels': self.channels, 'model_fingerprint': self.model_fingerprint.hex(),
            'prior_fingerprint': (self.prior_fingerprint.hex() if self.method == PRIOR
                                  else None),
            'image_size': [self.height, self.width], 'grid': [self.grid_height, self.grid_width],
            'k': self.k, 'label': self.label, 'codes_crc32': f'{self.codes_crc:08x}'}


@dataclasses.dataclass(frozen=True)
class HeaderV2:
  """The header fields of a version-2 file; K and channels come from the model."""
  method: int
  height: int
  width: int
  label: int | None
  fingerprint: bytes  # `pair_fingerprint` of the model(s), 2 bytes
  crc: int  # CRC-16 (see `binding_crc`)
  version: int = 2

  @property
  def grid(self) -> tuple[int, int]:
    return grid_shape(self.height, self.width)

  @property
  def grid_height(self) -> int:
    return self.grid[0]

  @property
  def grid_width(self) -> int:
    return self.grid[1]

  def describe(self) -> dict:
    """The fields as a JSON-friendly dict (the fingerprint in hex)."""
    return {'version': self.version, 'method': METHOD_NAMES[self.method],
            'fingerprint': self.fingerprint.hex(), 'image_size': [self.height, self.width],
            'grid': list(self.grid), 'label': self.label, 'crc16': f'{self.crc:04x}'}


@dataclasses.dataclass(frozen=True)
class Binding:
  """What a version-2 decoder takes from the model instead of the file: both
  fingerprints (4 bytes each; zeros for the prior of a fixed-length file), K
  and the channel count."""
  model_fingerprint: bytes
  prior_fingerprint: bytes
  k: int
  channels: int


def grid_shape(height: int, width: int) -> tuple[int, int]:
  """Original image size -> code grid (the image is padded to a multiple of 4)."""
  return -(-height // DOWNSAMPLING), -(-width // DOWNSAMPLING)


def codes_crc(codes) -> int:
  """CRC-32 of a code grid [h, w] as big-endian uint16 in raster order (version 1)."""
  return zlib.crc32(np.ascontiguousarray(np.asarray(codes), dtype='>u2').tobytes())


def is_compressed(head: bytes) -> bool:
  """Whether the first bytes of a file look like any version of `.vqz`."""
  return (head[:len(MAGIC)] == MAGIC or
          (len(head) >= 2 and head[0] == MAGIC_V2 and head[1] & 0xF0 == VERSION_TAG))


# --- version 1 ----------------------------------------------------------------

def pack(header: Header, payload: bytes) -> bytes:
  """A version-1 Header + payload -> the bytes of a file (tests and tools only:
  new files are version 2, `pack_v2`)."""
  _validate(header)
  label = NO_LABEL if header.label is None else header.label
  fields = _FIELDS.pack(MAGIC, header.version, header.method, header.channels,
                        header.model_fingerprint, header.prior_fingerprint, header.height,
                        header.width, header.grid_height, header.grid_width, header.k, label,
                        header.codes_crc)
  checksum = zlib.crc32(payload, zlib.crc32(fields))
  return fields + _CHECKSUM.pack(checksum) + payload


def _unpack_v1(data: bytes, name: str) -> tuple[Header, bytes]:
  if data[len(MAGIC)] != 1:
    raise FormatError(f'{name} has format version {data[len(MAGIC)]} in a {MAGIC!r} header, '
                      'but this vqvae-jax reads versions 1 and 2 only')
  if len(data) < HEADER_SIZE_V1:
    raise FormatError(f'{name} is truncated: {len(data)} bytes, less than the '
                      f'{HEADER_SIZE_V1}-byte header')
  fields, payload = data[:_FIELDS.size], data[HEADER_SIZE_V1:]
  (checksum,) = _CHECKSUM.unpack_from(data, _FIELDS.size)
  if zlib.crc32(payload, zlib.crc32(fields)) != checksum:
    raise FormatError(f'{name} is corrupted or truncated (checksum mismatch)')
  (_, version, method, channels, model_fp, prior_fp, height, width, gh, gw, k, label,
   crc) = _FIELDS.unpack(fields)
  header = Header(method=method, channels=channels, model_fingerprint=model_fp,
                  prior_fingerprint=prior_fp, height=height, width=width, grid_height=gh,
                  grid_width=gw, k=k, label=None if label == NO_LABEL else label,
                  codes_crc=crc, version=version)
  _validate(header, name)
  return header, payload


def _validate(header: Header, name: str = 'the header') -> None:
  """Field ranges and consistency of a version-1 header; raises FormatError."""
  problems = []
  if header.method not in METHOD_NAMES:
    problems.append(f'unknown coding method {header.method}')
  if header.channels not in (1, 3):
    problems.append(f'{header.channels} channels')
  if not (0 < header.height < 1 << 16 and 0 < header.width < 1 << 16):
    problems.append(f'image size {header.height}x{header.width}')
  elif header.grid != grid_shape(header.height, header.width):
    problems.append(f'code grid {header.grid_height}x{header.grid_width} for a '
                    f'{header.height}x{header.width} image')
  if not 2 <= header.k < 1 << 16:
    problems.append(f'K = {header.k}')
  if header.label is not None and not 0 <= header.label < NO_LABEL:
    problems.append(f'label {header.label}')
  if {len(header.model_fingerprint), len(header.prior_fingerprint)} != {FINGERPRINT_BYTES}:
    problems.append(f'fingerprints must be {FINGERPRINT_BYTES} bytes')
  if header.method == FIXED and any(header.prior_fingerprint):
    problems.append('a prior fingerprint in a fixed-length file')
  if problems:
    raise FormatError(f'{name} is not a valid compressed image: ' + '; '.join(problems))


# --- version 2 ----------------------------------------------------------------

def pair_fingerprint(model_fingerprint: bytes, prior_fingerprint: bytes | None) -> bytes:
  """2 bytes naming a VQ-VAE (+ prior) pair; None or zeros: the VQ-VAE alone."""
  prior = prior_fingerprint or bytes(FINGERPRINT_BYTES)
  return hashlib.sha256(b'vqz2' + model_fingerprint + prior).digest()[:PAIR_FINGERPRINT_BYTES]


def _varint(value: int) -> bytes:
  out = bytearray()
  while True:
    byte, value = value & 0x7F, value >> 7
    out.append(byte | (0x80 if value else 0))
    if not value:
      return bytes(out)


def _read_varint(data: bytes, pos: int, name: str, what: str) -> tuple[int, int]:
  """-> (value, next position); at most 3 bytes, minimal length."""
  value = 0
  for i in range(3):
    if pos + i >= len(data):
      raise FormatError(f'{name} is truncated (in the {what})')
    byte = data[pos + i]
    value |= (byte & 0x7F) << (7 * i)
    if not byte & 0x80:
      if i and not byte:
        raise FormatError(f'{name} is corrupted: the {what} is not minimally encoded')
      return value, pos + i + 1
  raise FormatError(f'{name} is corrupted: the {what} is longer than 3 bytes')


def _prefix_v2(header: HeaderV2) -> bytes:
  """The header bytes before the CRC (canonical: `unpack` accepts only these)."""
  square = header.width == header.height
  label = 0 if header.label is None else header.label + 1
  out = bytes([MAGIC_V2, VERSION_TAG | 2]) + _varint(label << 3 | square << 2 | header.method)
  out += _varint(header.height) + (b'' if square else _varint(header.width))
  return out + header.fingerprint


def header_size(height: int, width: int, label: int | None) -> int:
  """Bytes of a version-2 header for these fields (8 for 28 x 28 with a label < 15)."""
  return len(_prefix_v2(HeaderV2(PRIOR, height, width, label, bytes(2), 0))) + 2


def binding_crc(header: HeaderV2, binding: Binding, payload: bytes, codes) -> int:
  """The CRC-16 of a version-2 file (what it covers: the module docstring)."""
  codes = np.ascontiguousarray(np.asarray(codes), dtype='>u4')
  if codes.shape != header.grid:
    raise ValueError(f'codes {codes.shape} for a {header.grid} grid')
  model = struct.pack('>4s4sIIII', binding.model_fingerprint, binding.prior_fingerprint,
                      binding.k, binding.channels, *header.grid)
  crc = binascii.crc_hqx(_prefix_v2(header) + model, 0xFFFF)
  return binascii.crc_hqx(codes.tobytes(), binascii.crc_hqx(payload, crc))


def pack_v2(method: int, image_size, label: int | None, binding: Binding, payload: bytes,
            codes) -> bytes:
  """-> the bytes of a version-2 file holding `codes` [h, w] as `payload`."""
  height, width = (int(s) for s in image_size)
  prior_fp = binding.prior_fingerprint if method == PRIOR else None
  header = HeaderV2(method, height, width, label,
                    pair_fingerprint(binding.model_fingerprint, prior_fp), 0)
  _validate_v2(header)
  if method == FIXED and any(binding.prior_fingerprint):
    raise ValueError('a fixed-length binding has a zero prior fingerprint')
  crc = binding_crc(header, binding, payload, codes)
  return _prefix_v2(header) + struct.pack('>H', crc) + payload


def _unpack_v2(data: bytes, name: str) -> tuple[HeaderV2, bytes]:
  if data[1] != VERSION_TAG | 2:
    raise FormatError(f'{name} has format version {data[1] & 0x0F}, but this vqvae-jax '
                      'reads versions 1 and 2 only')
  mode, pos = _read_varint(data, 2, name, 'mode')
  height, pos = _read_varint(data, pos, name, 'image height')
  width = height
  if not mode & 4:
    width, pos = _read_varint(data, pos, name, 'image width')
  if len(data) < pos + _V2_TAIL:
    raise FormatError(f'{name} is truncated: {len(data)} bytes, less than its '
                      f'{pos + _V2_TAIL}-byte header')
  fingerprint = data[pos:pos + PAIR_FINGERPRINT_BYTES]
  (crc,) = struct.unpack_from('>H', data, pos + PAIR_FINGERPRINT_BYTES)
  label = (mode >> 3) - 1
  header = HeaderV2(mode & 3, height, width, None if label < 0 else label, fingerprint, crc)
  _validate_v2(header, name)
  if not mode & 4 and width == height:
    raise FormatError(f'{name} is corrupted: a square image with its width stored')
  return header, data[pos + _V2_TAIL:]


def _validate_v2(header: HeaderV2, name: str = 'the header') -> None:
  problems = []
  if header.method not in METHOD_NAMES:
    problems.append(f'unknown coding method {header.method}')
  if not (0 < header.height <= MAX_SIDE and 0 < header.width <= MAX_SIDE):
    problems.append(f'image size {header.height}x{header.width}')
  if header.label is not None and not 0 <= header.label < NO_LABEL:
    problems.append(f'label {header.label}')
  if len(header.fingerprint) != PAIR_FINGERPRINT_BYTES:
    problems.append(f'the fingerprint must be {PAIR_FINGERPRINT_BYTES} bytes')
  if problems:
    raise FormatError(f'{name} is not a valid compressed image: ' + '; '.join(problems))


def check_v2(header: HeaderV2, binding: Binding, payload: bytes, codes, name: str) -> None:
  """FormatError unless the decoded codes, the model and the file agree (the CRC)."""
  if binding_crc(header, binding, payload, codes) != header.crc:
    raise FormatError(f'{name} does not check out (CRC mismatch): it is corrupted, or '
                      'was made with another model, or the prior computes other '
                      'probabilities here than where the file was made (another machine '
                      'or library version?)')


# --- both versions --------------------------------------------------------------

def unpack(data: bytes, name: str = 'the file') -> tuple[Header | HeaderV2, bytes]:
  """The bytes of a file (version 1 or 2) -> (header, payload); FormatError if
  they are not valid or could not hold the grid they claim (`check_bound`)."""
  data = bytes(data)
  if len(data) < 2 or not is_compressed(data[:len(MAGIC)]):
    if data and (MAGIC.startswith(data) or data == bytes([MAGIC_V2])):
      raise FormatError(f'{name} is truncated ({len(data)} bytes)')
    raise FormatError(f'{name} is not a vqvae-jax compressed image (no {MAGIC!r} or '
                      f'version-2 magic bytes)')
  if data[:len(MAGIC)] == MAGIC:
    if len(data) <= len(MAGIC):
      raise FormatError(f'{name} is truncated ({len(data)} bytes)')
    header, payload = _unpack_v1(data, name)
  else:
    header, payload = _unpack_v2(data, name)
  check_bound(header, len(payload), name)
  return header, payload


def min_prior_payload(num_codes: int) -> int:
  """The fewest payload bytes a prior-coded file of `num_codes` codes may have."""
  bits = max(0, num_codes - FREE_CODES)
  return -(-bits // (8 * CODES_PER_PAYLOAD_BIT))


def fixed_code_bits(header, payload_bytes: int) -> list[int]:
  """Code sizes (bits) that fit a fixed-length payload of this length: [ceil(log2 K)]
  for version 1 if it fits, else every size in 1..32 that gives this length."""
  n = header.grid[0] * header.grid[1]
  sizes = [bits_per_code(header.k)] if header.version == 1 else range(1, 33)
  return [b for b in sizes if -(-n * b // 8) == payload_bytes]


def check_bound(header, payload_bytes: int, name: str = 'the file') -> None:
  """FormatError if the payload is too short (fixed: the wrong length) for the
  grid the header claims: refuses a forged size before any work or allocation."""
  h, w = header.grid
  if header.method == FIXED and not fixed_code_bits(header, payload_bytes):
    raise FormatError(f'{name} is corrupted or truncated: a fixed-length payload of '
                      f'{payload_bytes} bytes cannot hold the {h}x{w} code grid')
  if header.method == PRIOR and payload_bytes < min_prior_payload(h * w):
    raise FormatError(f'{name} is corrupted or forged: its {h}x{w} code grid would need '
                      f'at least {min_prior_payload(h * w)} payload bytes, it has '
                      f'{payload_bytes}')


def bits_per_code(k: int) -> int:
  """ceil(log2 K): the fixed-length code size."""
  return (k - 1).bit_length()


def pack_fixed(codes, k: int) -> bytes:
  """codes [h, w] in [0, K) -> ceil(h * w * ceil(log2 K) / 8) bytes, MSB first."""
  codes = np.asarray(codes).reshape(-1).astype(np.int64)
  if codes.size and (codes.min() < 0 or codes.max() >= k):
    raise ValueError(f'codes must be in [0, {k}), got [{codes.min()}, {codes.max()}]')
  bits = bits_per_code(k)
  shifts = np.arange(bits - 1, -1, -1, dtype=np.int64)
  return np.packbits(((codes[:, None] >> shifts) & 1).astype(np.uint8)).tobytes()


def unpack_fixed(payload: bytes, shape: tuple[int, int], k: int) -> np.ndarray:
  """Inverse of `pack_fixed` -> codes [h, w] int32; FormatError on a bad payload."""
  bits, n = bits_per_code(k), shape[0] * shape[1]
  if len(payload) != -(-n * bits // 8):
    raise FormatError(f'the fixed-length payload has {len(payload)} bytes, expected '
                      f'{-(-n * bits // 8)} for {n} codes of {bits} bits')
  flat = np.unpackbits(np.frombuffer(payload, np.uint8))[:n * bits].reshape(n, bits)
  codes = flat.astype(np.int64) @ (1 << np.arange(bits - 1, -1, -1, dtype=np.int64))
  if codes.size and codes.max() >= k:
    raise FormatError(f'the payload holds code {codes.max()}, but K = {k}')
  return codes.reshape(shape).astype(np.int32)
