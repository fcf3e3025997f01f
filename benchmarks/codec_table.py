"""The README's codec tables (markdown), generated from benchmark JSON.

    python benchmarks/codec_table.py benchmarks/results --update README.md

Reads, in the folder:
  bench_codec_*.json             benchmarks/bench_codec.py, one file per CPU kind
                                 -> table `codec-speed` (a row per file)
  integer_rate.json              benchmarks/integer_rate.py -> table `codec-rate`
  codec_portability.json         benchmarks/codec_portability.py -> `codec-portability`
  rate_distortion.json           benchmarks/rate_distortion.py on Fashion-MNIST
                                 -> table `rd-fashion-mnist`
  rate_distortion_atari-boxing.json   the same on Atari Boxing -> `rd-atari-boxing`
and prints each table; with --update, replaces the text between
`<!-- table:NAME -->` and `<!-- /table:NAME -->` in the README (a table whose
JSON is missing is left as it is).
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks.results_table import update  # noqa: E402  pylint: disable=wrong-import-position

FAMILIES = ('avif', 'webp', 'jpeg')
NAMES = {'avif': 'AVIF', 'webp': 'WebP', 'jpeg': 'JPEG'}


def _read(path):
  with open(path) as f:
    text = f.read().strip()
  try:
    return json.loads(text)
  except json.JSONDecodeError:  # a log with the JSON on its last line
    return json.loads(text.splitlines()[-1])


def machine(m: dict) -> str:
  isa = '/'.join(k for k in ('avx2', 'avx512', 'amx') if m.get(k))
  commit = f'commit {m["commit"]}' if m.get('commit') else 'commit not recorded'
  return f'{m["cpu"]} ({m["cores"]} cores, {isa}), JAX {m["jax"]}, {m["date"]}, {commit}'


def speed_table(paths) -> str:
  rows = ['| machine | compress (images/s) | decompress (images/s) | file | codes exact | '
          'integer prior alone (grids/s: whole grid / decoder, layer 0) | label shortlist '
          'against every label | other processes |',
          '| --- | --- | --- | --- | --- | --- | --- | --- |']
  for path in paths:
    s = _read(path)
    h, w, c = s['image_shape']
    net = s.get('network')
    if net:
      best = net[net['layer0_default']]
      alone = (f'{best["whole_grid_grids_per_s"]:.0f} / {best["decoder_grids_per_s"]:.0f} '
               f'({net["layer0_default"]})')
    else:
      alone = 'not measured'
    load = f', model loading {s["model_load_s"]:.2f} s included' if 'model_load_s' in s else ''
    ls = s.get('label_search')
    short = (f'{100 * (ls["ratio"] - 1):+.2f}% bytes, same label {100 * ls["same_label"]:.0f}% '
             f'({ls["grids"]} grids)' if ls else 'not measured')
    rows.append(
        f'| {machine(s["machine"])} | **{s["compress_imgs_per_s"]:.1f}** | '
        f'**{s["decompress_imgs_per_s"]:.1f}** | {s["images"]} test images {h}x{w}x{c}{load}; '
        f'{s["mean_file_bytes"]:.1f} bytes, {s["bits_per_pixel"]:.3f} bpp at '
        f'{s["psnr_db"]:.2f} dB | {s["exact"]} | {alone} | {short} | '
        f'{100 * s["other_procs_cpu_frac"]:.1f}% |')
  return '\n'.join(rows)


def rate_table(rate: dict) -> str:
  return '\n'.join([
      '| integer prior | float prior | cost | grids | machine |',
      '| --- | --- | --- | --- | --- |',
      f'| {rate["integer_bits_per_code"]:.4f} bits/code | {rate["float_bits_per_code"]:.4f} '
      f'bits/code | **+{100 * rate["overhead"]:.2f}%** | {rate["grids"]} test grids, K '
      f'{rate["k"]}, {rate["layers"]} layers | {machine(rate["machine"])} |'])


def portability_table(port: dict) -> str:
  rows = ['| decoded in a fresh process with | files decoded to exactly the encoder\'s codes |',
          '| --- | --- |']
  for name, r in port['configs'].items():
    rows.append(f'| {name} | {r["exact"]} of {r["files"]} (exit code {r["exit_code"]}) |')
  rows.append(f'\nPrior {port["prior"]}, coded with layer 0 as '
              f'{port.get("layer0_default", "tables")}; {machine(port["machine"])}.')
  return '\n'.join(rows)


def _at(comp: dict, label: str) -> str:
  for a in comp['at_our_points']:
    if a['label'] == label:
      where = '' if a['where'] == 'interpolated' else ' (its lowest rate, at a higher PSNR)'
      return f'{a["bpp_at_our_psnr"]:.3f}{where}'
  return 'n/a'


def rd_table(rd: dict) -> str:
  comp = rd['comparison']
  head = '| point | bpp (.vqz) | PSNR (dB) | ' + ' | '.join(
      f'{NAMES[f]} bpp at that PSNR' for f in FAMILIES) + ' |'
  rows = [head, '|' + ' --- |' * (3 + len(FAMILIES))]
  for p in rd['points']:
    rows.append(f'| {p["label"]} | **{p["bpp"]:.3f}** | {p["psnr"]:.2f} | ' +
                ' | '.join(_at(comp[f], p['label']) for f in FAMILIES) + ' |')
  bd = ', '.join(
      f'{NAMES[f]} **{comp[f]["bd_rate"]:+.1f}%**' if comp[f]['bd_rate'] is not None
      else f'{NAMES[f]} n/a ({comp[f]["bd_rate_reason"]})' for f in FAMILIES)
  bare = comp.get('avif_bitstream', {}).get('bd_rate')
  if bare is not None:
    bd += f' (AVIF without its container, the bare AV1 bitstream: {bare:+.1f}%)'
  psnrs = [p['psnr'] for p in rd['points']]
  goal = comp['goal']
  rows += ['', f'{rd["num_images"]} {rd["dataset"]} {rd["split"]} images '
           f'({"x".join(map(str, rd["image_shape"]))}); the points span '
           f'{max(psnrs) - min(psnrs):.1f} dB. BD-rate of .vqz (over the overlapping PSNR '
           f'range): {bd}. Smaller than AVIF at equal PSNR at every point: '
           f'**{"yes" if goal["met"] else "no"}**'
           f'{"" if goal["met"] else " (" + str(goal["why"]) + ")"}. '
           f'{machine(rd["machine"])}, {rd["wall_s"] / 60:.0f} min.']
  return '\n'.join(rows)


def tables(folder: str) -> dict:
  out = {}
  speed = sorted(glob.glob(os.path.join(folder, 'bench_codec_*.json')))
  if speed:
    out['codec-speed'] = speed_table(speed)
  path = os.path.join(folder, 'codec_portability.json')
  if os.path.exists(path):
    out['codec-portability'] = portability_table(_read(path))
  path = os.path.join(folder, 'integer_rate.json')
  if os.path.exists(path):
    out['codec-rate'] = rate_table(_read(path))
  for name, file in (('rd-fashion-mnist', 'rate_distortion.json'),
                     ('rd-atari-boxing', 'rate_distortion_atari-boxing.json')):
    path = os.path.join(folder, file)
    if os.path.exists(path):
      out[name] = rd_table(_read(path))
  return out


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  p.add_argument('folder')
  p.add_argument('--update', default=None, metavar='README')
  args = p.parse_args(argv)
  for name, text in tables(args.folder).items():
    if args.update:
      update(args.update, name, text)
    print(f'<!-- {name} -->\n{text}\n')


if __name__ == '__main__':
  main()
