"""The compressed-image file format (`.vqz`): header, checksums, fixed-length codes.

A file is a 35-byte header followed by the payload. Integers are big-endian.

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
the range coder's 32-bit words, big-endian, with up to 3 trailing zero bytes
removed (`prior_coding`).

The checksum catches truncated and corrupted files; the code CRC catches a
decoder that reconstructs other codes than the encoder had (a model, or a
machine, that computes the prior's probabilities differently), so a wrong image
is never written silently.
"""
from __future__ import annotations

import dataclasses
import struct
import zlib

import numpy as np

from vqvae_jax.errors import UserError

MAGIC = b'VQVZ'
VERSION = 1
FIXED, PRIOR = 0, 1
METHOD_NAMES = {FIXED: 'fixed', PRIOR: 'prior'}
NO_LABEL = 0xFFFF
DOWNSAMPLING = 4
FINGERPRINT_BYTES = 4
_FIELDS = struct.Struct('>4sBBB4s4sHHHHHHI')
_CHECKSUM = struct.Struct('>I')
HEADER_SIZE = _FIELDS.size + _CHECKSUM.size  # 35


class FormatError(UserError):
  """A file that is not a valid compressed image (truncated, corrupted, ...)."""


@dataclasses.dataclass(frozen=True)
class Header:
  """The header fields of a compressed image (see the module docstring)."""
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
  version: int = VERSION

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


def grid_shape(height: int, width: int) -> tuple[int, int]:
  """Original image size -> code grid (the image is padded to a multiple of 4)."""
  return -(-height // DOWNSAMPLING), -(-width // DOWNSAMPLING)


def codes_crc(codes) -> int:
  """CRC-32 of a code grid [h, w] as big-endian uint16 in raster order."""
  return zlib.crc32(np.ascontiguousarray(np.asarray(codes), dtype='>u2').tobytes())


def pack(header: Header, payload: bytes) -> bytes:
  """Header + payload -> the bytes of a file."""
  _validate(header)
  label = NO_LABEL if header.label is None else header.label
  fields = _FIELDS.pack(MAGIC, header.version, header.method, header.channels,
                        header.model_fingerprint, header.prior_fingerprint, header.height,
                        header.width, header.grid_height, header.grid_width, header.k, label,
                        header.codes_crc)
  checksum = zlib.crc32(payload, zlib.crc32(fields))
  return fields + _CHECKSUM.pack(checksum) + payload


def unpack(data: bytes, name: str = 'the file') -> tuple[Header, bytes]:
  """The bytes of a file -> (Header, payload); FormatError if they are not valid."""
  data = bytes(data)
  if data[:len(MAGIC)] != MAGIC[:len(data)]:
    raise FormatError(f'{name} is not a vqvae-jax compressed image (no {MAGIC!r} magic bytes)')
  if len(data) <= len(MAGIC):
    raise FormatError(f'{name} is truncated ({len(data)} bytes)')
  if data[len(MAGIC)] != VERSION:
    raise FormatError(f'{name} has format version {data[len(MAGIC)]}, but this vqvae-jax '
                      f'reads version {VERSION} only')
  if len(data) < HEADER_SIZE:
    raise FormatError(f'{name} is truncated: {len(data)} bytes, less than the '
                      f'{HEADER_SIZE}-byte header')
  fields, payload = data[:_FIELDS.size], data[HEADER_SIZE:]
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
  """Field ranges and consistency; raises FormatError."""
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
