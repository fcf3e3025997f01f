"""Prints the README's codec rows (markdown) from benchmark JSON.

    python benchmarks/codec_table.py benchmarks/results

Reads `bench_codec.json` (benchmarks/bench_codec.py) and `integer_rate.json`
(benchmarks/integer_rate.py) in the folder.
"""
from __future__ import annotations

import argparse
import json
import os


def _read(folder, name):
  with open(os.path.join(folder, name)) as f:
    return json.loads(f.read().strip().splitlines()[-1])


def _machine(m: dict) -> str:
  isa = '/'.join(k for k in ('avx2', 'avx512', 'amx') if m.get(k))
  return f'{m["cpu"]} ({m["cores"]} cores, {isa}), JAX {m["jax"]}, {m["date"]}'


def main():
  p = argparse.ArgumentParser()
  p.add_argument('folder')
  folder = p.parse_args().folder
  speed, rate = _read(folder, 'bench_codec.json'), _read(folder, 'integer_rate.json')
  print('| what | measured | machine |')
  print('| --- | --- | --- |')
  h, w, c = speed['image_shape']
  print(f'| compress, {speed["images"]} Fashion-MNIST test images ({h}x{w}x{c}), label chosen '
        f'per image, file I/O included | {speed["compress_imgs_per_s"]:.1f} images/s | '
        f'{_machine(speed["machine"])}, other processes {100 * speed["other_procs_cpu_frac"]:.1f}% |')
  print(f'| decompress, the same files | {speed["decompress_imgs_per_s"]:.1f} images/s '
        f'(codes exact: {speed["exact"]}) | same |')
  print(f'| file size | {speed["mean_file_bytes"]:.1f} bytes, {speed["bits_per_pixel"]:.3f} bpp '
        f'at {speed["psnr_db"]:.2f} dB | same |')
  print(f'| integer prior vs float prior (K {rate["k"]}, {rate["layers"]} layers, '
        f'{rate["grids"]} test grids) | {rate["integer_bits_per_code"]:.4f} vs '
        f'{rate["float_bits_per_code"]:.4f} bits/code (+{100 * rate["overhead"]:.2f}%) | '
        f'{_machine(rate["machine"])} |')


if __name__ == '__main__':
  main()
