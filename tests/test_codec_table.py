"""The README's codec tables come from the benchmark JSON, and --update edits only between markers."""
import json
import os

from benchmarks import codec_table

RESULTS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                       'benchmarks', 'results')


def _speed_json(path, compress, decompress, cpu):
  record = {'compress_imgs_per_s': compress, 'decompress_imgs_per_s': decompress,
            'images': 64, 'image_shape': [28, 28, 1], 'mean_file_bytes': 30.5,
            'bits_per_pixel': 0.311, 'psnr_db': 24.2, 'exact': True, 'model_load_s': 0.3,
            'other_procs_cpu_frac': 0.01,
            'label_search': {'ratio': 1.0064, 'same_label': 0.9, 'grids': 32},
            'network': {'layer0_default': 'conv',
                        'conv': {'whole_grid_grids_per_s': 2800.0, 'decoder_grids_per_s': 1200.0},
                        'tables': {'whole_grid_grids_per_s': 1800.0, 'decoder_grids_per_s': 1000.0}},
            'machine': {'cpu': cpu, 'cores': 2, 'avx2': True, 'avx512': False, 'amx': False,
                        'jax': '0.10.2', 'date': '2026-12-02', 'commit': 'abc1234'}}
  path.write_text(json.dumps(record) + '\n')


def test_speed_table_has_a_row_per_cpu_kind_from_the_json(tmp_path):
  _speed_json(tmp_path / 'bench_codec_a.json', 412.3, 377.7, 'CPU A')
  _speed_json(tmp_path / 'bench_codec_b.json', 88.8, 99.9, 'CPU B')
  text = codec_table.tables(str(tmp_path))['codec-speed']
  rows = text.splitlines()[2:]
  assert len(rows) == 2
  assert 'CPU A' in rows[0] and '**412.3**' in rows[0] and '**377.7**' in rows[0]
  assert 'CPU B' in rows[1] and '**88.8**' in rows[1] and 'commit abc1234' in rows[1]
  assert '2800 / 1200 (conv)' in rows[0] and '+0.64% bytes, same label 90%' in rows[0]


def test_rd_table_reads_the_committed_fashion_mnist_curve():
  with open(os.path.join(RESULTS, 'rate_distortion.json')) as f:
    rd = json.load(f)
  text = codec_table.rd_table(rd)
  for p in rd['points']:
    assert f'| {p["label"]} | **{p["bpp"]:.3f}** | {p["psnr"]:.2f} |' in text
  assert f'AVIF **{rd["comparison"]["avif"]["bd_rate"]:+.1f}%**' in text


def test_update_replaces_only_between_the_markers(tmp_path):
  readme = tmp_path / 'README.md'
  readme.write_text('intro\n<!-- table:codec-speed -->\nold\n<!-- /table:codec-speed -->\nend\n')
  _speed_json(tmp_path / 'bench_codec_x.json', 500.0, 400.0, 'CPU X')
  codec_table.main([str(tmp_path), '--update', str(readme)])
  doc = readme.read_text()
  assert doc.startswith('intro\n<!-- table:codec-speed -->\n| machine |')
  assert 'old' not in doc and doc.endswith('<!-- /table:codec-speed -->\nend\n')
  assert '**500.0**' in doc
