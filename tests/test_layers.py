"""Every convolution formulation in vqvae_jax.models.formulations equals its reference.

Checked in float64 (jax.enable_x64) on random inputs: values and gradients
w.r.t. input, kernel and bias, for a random upstream gradient. Tolerance
1e-10 absolute on values of order 1-10 (the formulations only reorder sums,
so float64 differences are ~1e-14). One float32 check per layer kind guards
the float32 path (tolerance 1e-4 relative to the output scale).
BatchNorm is checked against flax's nn.BatchNorm the same way. impl='auto'
picks per backend; an override per layer kind changes the function used, not
the parameters or (in float64) the model's outputs.
"""
import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vqvae_jax.models import formulations, layers, vqvae

ATOL64 = 1e-10
# (B, H, W, Ci, Co): odd sizes (7, 5), H != W, Ci != Co, 1 and 3 channels.
DOWN_SHAPES = [(2, 7, 7, 3, 5), (1, 14, 6, 1, 4)]
UP_SHAPES = [(2, 7, 7, 3, 5), (1, 14, 5, 4, 1)]
CONV3_SHAPES = [(2, 7, 7, 3, 5), (1, 5, 8, 1, 3)]


def _check(fn, ref, shape, ks, dtype, atol):
  b, h, w, ci, co = shape
  rng = np.random.default_rng(hash((shape, ks)) % 2**32)
  x = jnp.asarray(rng.normal(size=(b, h, w, ci)), dtype)
  k = jnp.asarray(rng.normal(size=(ks, ks, ci, co)), dtype)
  bias = jnp.asarray(rng.normal(size=(co,)), dtype)
  out_shape = jax.eval_shape(ref, x, k, bias).shape
  g = jnp.asarray(rng.normal(size=out_shape), dtype)

  @jax.jit
  def both(x, k, bias, g):  # one compile per case instead of op-by-op dispatch
    (y_ref, vjp_ref), (y, vjp) = jax.vjp(ref, x, k, bias), jax.vjp(fn, x, k, bias)
    return y_ref, y, vjp_ref(g), vjp(g)

  y_ref, y, grads_ref, grads = both(x, k, bias, g)
  assert y.shape == y_ref.shape and y.dtype == y_ref.dtype
  np.testing.assert_allclose(np.asarray(y), np.asarray(y_ref), rtol=0, atol=atol)
  for name, a, r in zip(('dx', 'dkernel', 'dbias'), grads, grads_ref):
    assert a.shape == r.shape, name
    np.testing.assert_allclose(np.asarray(a), np.asarray(r), rtol=0, atol=atol * 10, err_msg=name)


def _cases(table, shapes):
  """Every exact formulation (the bfloat16 ones are checked below)."""
  return [(impl, s) for impl in sorted(table)
          if impl != 'reference' and not formulations.computes_in_bfloat16(impl) for s in shapes]


@pytest.mark.parametrize('impl,shape', _cases(formulations.DOWN_IMPLS, DOWN_SHAPES))
def test_down_float64(impl, shape):
  with jax.enable_x64(True):
    _check(formulations.DOWN_IMPLS[impl], formulations.reference_down, shape, 4, jnp.float64, ATOL64)


@pytest.mark.parametrize('impl,shape', _cases(formulations.UP_IMPLS, UP_SHAPES))
def test_up_float64(impl, shape):
  with jax.enable_x64(True):
    _check(formulations.UP_IMPLS[impl], formulations.reference_up, shape, 4, jnp.float64, ATOL64)


@pytest.mark.parametrize('impl,shape', _cases(formulations.CONV3X3_IMPLS, CONV3_SHAPES))
def test_conv3x3_float64(impl, shape):
  with jax.enable_x64(True):
    _check(formulations.CONV3X3_IMPLS[impl], formulations.reference_conv3x3, shape, 3, jnp.float64, ATOL64)


def test_conv1x1_float64():
  with jax.enable_x64(True):
    ref = lambda x, k, b: jax.lax.conv_general_dilated(  # noqa: E731
        x, k, (1, 1), 'VALID', dimension_numbers=('NHWC', 'HWIO', 'NHWC')) + b
    _check(formulations.conv1x1, ref, (2, 7, 5, 3, 4), 1, jnp.float64, ATOL64)


@pytest.mark.parametrize('table,ref,ks,shape', [
    (formulations.DOWN_IMPLS, formulations.reference_down, 4, (2, 14, 14, 16, 24)),
    (formulations.UP_IMPLS, formulations.reference_up, 4, (2, 7, 7, 24, 16)),
    (formulations.CONV3X3_IMPLS, formulations.reference_conv3x3, 3, (2, 7, 7, 16, 16)),
])
def test_float32_close(table, ref, ks, shape):
  # Values are sums of 16-400 products of N(0, 1) terms: |y| ~ 10-20.
  for impl, fn in table.items():
    if not formulations.computes_in_bfloat16(impl):
      _check(fn, ref, shape, ks, jnp.float32, 1e-3)


# ----------------------------------------------------------------------------
# The bfloat16 formulations round x, kernel, bias and the upstream gradient to
# bfloat16 and accumulate in float32. On operands that are bfloat16 numbers
# already every product is exact in float32, so they equal the float64
# reference up to float32 accumulation: tolerance 2e-5 relative to the
# largest |value| (sums of up to 4096 terms of size ~1 accumulate ~1e-6).
# ----------------------------------------------------------------------------
def _bf16_round(rng, shape):
  return np.asarray(jnp.asarray(rng.normal(size=shape), jnp.bfloat16).astype(jnp.float32))


BF16_CASES = [
    (formulations.DOWN_IMPLS, 's2d_bf16', formulations.reference_down, 4, (2, 7, 7, 3, 5)),
    (formulations.DOWN_IMPLS, 's2d_bf16', formulations.reference_down, 4, (1, 14, 6, 1, 24)),
    (formulations.UP_IMPLS, 'sub2_bf16', formulations.reference_up, 4, (2, 7, 7, 3, 5)),
    (formulations.UP_IMPLS, 'sub2_bf16', formulations.reference_up, 4, (1, 6, 5, 24, 1)),
    (formulations.CONV3X3_IMPLS, 'im2col_bf16', formulations.reference_conv3x3, 3, (2, 7, 7, 3, 5)),
    (formulations.CONV3X3_IMPLS, 'im2col_bf16', formulations.reference_conv3x3, 3, (1, 5, 8, 32, 24)),
    (formulations.CONV1X1_IMPLS, 'matmul_bf16', formulations.conv1x1, 1, (2, 7, 5, 3, 4)),
]


@pytest.mark.parametrize('table,impl,ref,ks,shape', BF16_CASES)
def test_bfloat16_formulations_equal_reference_on_bfloat16_operands(table, impl, ref, ks, shape):
  b, h, w, ci, co = shape
  rng = np.random.default_rng(hash((impl, shape)) % 2**32)
  x, k, bias = (_bf16_round(rng, s) for s in ((b, h, w, ci), (ks, ks, ci, co), (co,)))
  with jax.enable_x64(True):
    x64, k64, b64 = (jnp.asarray(a, jnp.float64) for a in (x, k, bias))
    y_ref, vjp_ref = jax.vjp(ref, x64, k64, b64)
    g = _bf16_round(rng, y_ref.shape)
    grads_ref = vjp_ref(jnp.asarray(g, jnp.float64))
  fn = jax.jit(lambda x, k, bias, g: (lambda y, vjp: (y, vjp(g)))(*jax.vjp(table[impl], x, k, bias)))
  y, grads = fn(*(jnp.asarray(a, jnp.float32) for a in (x, k, bias, g)))
  assert y.dtype == jnp.float32 and y.shape == y_ref.shape
  for name, a, r in zip(('y', 'dx', 'dkernel', 'dbias'), (y,) + tuple(grads),
                        (y_ref,) + tuple(grads_ref)):
    r = np.asarray(r)
    assert a.shape == r.shape and a.dtype == jnp.float32, name
    np.testing.assert_allclose(np.asarray(a, np.float64), r, rtol=0,
                               atol=2e-5 * np.abs(r).max(), err_msg=name)


@pytest.mark.parametrize('table,impl,ref,ks,shape', BF16_CASES[::2])
def test_bfloat16_formulations_in_bfloat16(table, impl, ref, ks, shape):
  """bfloat16 in, bfloat16 out (and gradients), within bfloat16 rounding of
  the float32 reference: 2% of the largest |value|."""
  b, h, w, ci, co = shape
  rng = np.random.default_rng(1)
  x, k, bias = (jnp.asarray(rng.normal(size=s), jnp.float32)
                for s in ((b, h, w, ci), (ks, ks, ci, co), (co,)))
  y_ref, vjp_ref = jax.vjp(ref, x, k, bias)
  g = jnp.asarray(rng.normal(size=y_ref.shape), jnp.float32)
  low = tuple(a.astype(jnp.bfloat16) for a in (x, k, bias, g))
  y, vjp = jax.vjp(table[impl], *low[:3])
  for name, a, r in zip(('y', 'dx', 'dkernel', 'dbias'), (y,) + vjp(low[3]),
                        (y_ref,) + vjp_ref(g)):
    assert a.dtype == jnp.bfloat16 and a.shape == r.shape, name
    r = np.asarray(r)
    np.testing.assert_allclose(np.asarray(a.astype(jnp.float32)), r, rtol=0,
                               atol=0.02 * np.abs(r).max(), err_msg=name)


@pytest.mark.parametrize('module,features,shape,ks', [
    (layers.DownConv, 5, (2, 8, 8, 1), 4), (layers.DownConv, 20, (2, 6, 6, 20), 4),
    (layers.UpConv, 20, (2, 3, 3, 20), 4), (layers.UpConv, 3, (2, 6, 6, 4), 4)])
def test_modules_params_and_function(module, features, shape, ks):
  """Default ('auto') modules keep the kernel/bias convention and equal the reference."""
  ref = {layers.DownConv: formulations.reference_down, layers.UpConv: formulations.reference_up,
         layers.Conv3x3: formulations.reference_conv3x3}[module]
  x = jax.random.normal(jax.random.PRNGKey(1), shape)
  m = module(features)
  v = m.init(jax.random.PRNGKey(0), x)
  assert v['params']['kernel'].shape == (ks, ks, shape[-1], features)
  assert v['params']['bias'].shape == (features,)
  kernel = v['params']['kernel']
  bias = jax.random.normal(jax.random.PRNGKey(2), (features,))
  params = {'params': {'kernel': kernel, 'bias': bias}}
  np.testing.assert_allclose(np.asarray(jax.jit(m.apply)(params, x)),
                             np.asarray(ref(x, kernel, bias)), rtol=0, atol=1e-5)


@pytest.mark.parametrize('x64', [False, True])
def test_conv1x1_module_is_flax_conv(x64):
  """Same variables, same initial values (float32 even under x64) and same
  function as the nn.Conv(features, (1, 1)) it replaces in the ResBlock."""
  with jax.enable_x64(x64):
    x = jax.random.normal(jax.random.PRNGKey(1), (2, 5, 3, 6))
    ours = layers.Conv1x1(4)
    ref = nn.Conv(4, (1, 1), kernel_init=nn.initializers.xavier_uniform())
    v, v_ref = ours.init(jax.random.PRNGKey(0), x), ref.init(jax.random.PRNGKey(0), x)
    assert jax.tree.map(lambda a: (a.shape, a.dtype), v) == \
        jax.tree.map(lambda a: (a.shape, a.dtype), v_ref)
    np.testing.assert_array_equal(v['params']['kernel'], v_ref['params']['kernel'])
    v = {'params': {'kernel': v['params']['kernel'],
                    'bias': jax.random.normal(jax.random.PRNGKey(2), (4,))}}
    np.testing.assert_allclose(np.asarray(ours.apply(v, x)), np.asarray(ref.apply(v, x)),
                               rtol=0, atol=1e-5)


def test_unknown_impl_raises():
  with pytest.raises(ValueError, match='unknown'):
    layers.DownConv(3, impl='nope').init(jax.random.PRNGKey(0), jnp.zeros((1, 4, 4, 1)))


def test_auto_impls_per_backend():
  cpu = {'down': 's2d_conv', 'down_narrow': 's2d_conv', 'up': 'phase_conv',
         'up_narrow': 'col2im', 'conv3x3': 'reference', 'conv1x1': 'reference'}
  assert layers.auto_impls('cpu') == cpu == dict(layers.CPU_IMPLS)
  assert layers.auto_impls('cpu', jnp.float32) == cpu
  assert layers.auto_impls('cpu', jnp.float64) == cpu
  cpu_bf16 = layers.auto_impls('cpu', jnp.bfloat16)
  assert cpu_bf16 == dict(layers.CPU_BF16_IMPLS) and set(cpu_bf16) == set(cpu)
  assert all(formulations.computes_in_bfloat16(v) for k, v in cpu_bf16.items() if k != 'up_narrow')
  for backend in ('gpu', 'tpu'):
    for dtype in (None, jnp.bfloat16):
      assert layers.auto_impls(backend, dtype) == {kind: 'reference' for kind in cpu}
  assert layers.auto_impls() == layers.auto_impls(jax.default_backend())
  with pytest.raises(TypeError):  # the tables are read-only
    layers.CPU_IMPLS['up'] = 'sub2_conv'
  layers.auto_impls('cpu')['up'] = 'sub2_conv'  # a copy: the table is unchanged
  assert layers.CPU_IMPLS['up'] == 'phase_conv'


@pytest.mark.parametrize('backend', ['cpu', 'gpu'])
def test_choose_and_overrides(backend):
  refs = {'down': formulations.reference_down, 'up': formulations.reference_up,
          'conv3x3': formulations.reference_conv3x3, 'conv1x1': formulations.conv1x1}
  tables = {'down': formulations.DOWN_IMPLS, 'up': formulations.UP_IMPLS,
            'conv3x3': formulations.CONV3X3_IMPLS, 'conv1x1': formulations.CONV1X1_IMPLS}
  for kind, narrow in (('down', False), ('down', True), ('up', False), ('up', True),
                       ('conv3x3', False), ('conv1x1', False)):
    table = tables[kind]
    key = kind + ('_narrow' if narrow else '')
    for dtype in (None, jnp.bfloat16):
      auto = layers.choose(kind, narrow, backend=backend, dtype=dtype)
      assert auto is table[layers.auto_impls(backend, dtype)[key]]
      if backend != 'cpu':
        assert auto is refs[kind]
  over = (('up', 'sub2_conv'),)
  assert layers.choose('up', False, overrides=over, backend=backend) is formulations.up_sub2_conv
  # Only the named kind changes; an explicit impl wins over the table.
  assert layers.choose('up', True, overrides=over, backend=backend) is \
      layers.choose('up', True, backend=backend)
  assert layers.choose('up', False, 'col2im', over, backend) is formulations.up_col2im
  assert layers.effective_impls(over, backend)['up'] == 'sub2_conv'


@pytest.mark.parametrize('impls', [{'upp': 'sub2_conv'}, {'up': 's2d_conv'},
                                   {'conv3x3_narrow': 'matmul'}])
def test_bad_overrides_raise(impls):
  with pytest.raises(ValueError, match='unknown'):
    layers.check_impls(impls)


# Differs from both auto tables for every kind, so the override really changes the program.
OVERRIDES = (('conv3x3', 'matmul'), ('down', 's2d_matmul'), ('down_narrow', 's2d_dotgrad'),
             ('up', 'sub2_conv'), ('up_narrow', 'sub3_conv'))


def test_model_override_same_params_and_outputs():
  """hidden 20 > NARROW: both the wide and the narrow layers are exercised."""
  with jax.enable_x64(True):
    x = jnp.asarray(np.random.default_rng(0).uniform(-1, 1, (3, 8, 12, 1)))
    kw = dict(channels=1, hidden=20, k=6, dtype=jnp.float64)
    base, over = vqvae.VQVAE(**kw), vqvae.VQVAE(**kw, impls=OVERRIDES)
    v = jax.jit(base.init)(jax.random.key(0), x)
    # Same names, shapes and dtypes (so the same initial values: they depend on those only).
    shapes = [jax.eval_shape(m.init, jax.random.key(0), x) for m in (base, over)]
    assert shapes[0] == shapes[1] == jax.eval_shape(lambda: v)

    def forward(m, v, x):
      out, upd = m.apply(v, x, train=True, mutable=['batch_stats'])
      return out, upd, m.apply(v, out.indices, method=vqvae.VQVAE.decode)

    assert str(jax.make_jaxpr(functools.partial(forward, base))(v, x)) != \
        str(jax.make_jaxpr(functools.partial(forward, over))(v, x))
    ((out, upd, dec), (out_o, upd_o, dec_o)) = jax.jit(
        lambda v, x: (forward(base, v, x), forward(over, v, x)))(v, x)
    np.testing.assert_array_equal(np.asarray(out.indices), np.asarray(out_o.indices))
    np.testing.assert_allclose(np.asarray(out.z_e), np.asarray(out_o.z_e), rtol=0, atol=ATOL64)
    # z_e goes through float32 before quantisation, so the straight-through
    # x_tilde may differ by float32 rounding; decoding the codes may not.
    np.testing.assert_allclose(np.asarray(out.x_tilde), np.asarray(out_o.x_tilde), atol=1e-6)
    np.testing.assert_allclose(np.asarray(dec), np.asarray(dec_o), rtol=0, atol=ATOL64)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=0, atol=ATOL64), upd, upd_o)


@pytest.mark.parametrize('train', [True, False])
def test_batchnorm_matches_flax(train):
  with jax.enable_x64(True):
    x = jnp.asarray(np.random.default_rng(0).normal(size=(4, 5, 3, 6)) * 2 + 1)
    kw = dict(use_running_average=not train, momentum=0.9, epsilon=1e-5, dtype=jnp.float64)
    ours, theirs = layers.BatchNorm(**kw), nn.BatchNorm(param_dtype=jnp.float64, **kw)
    v_ours = ours.init(jax.random.PRNGKey(0), x)
    v_theirs = theirs.init(jax.random.PRNGKey(0), x)
    assert (jax.tree.map(jnp.shape, v_ours) == jax.tree.map(jnp.shape, v_theirs))
    c = jnp.arange(6.0)
    v = {'params': {'scale': c + 1, 'bias': c * 0.1},
         'batch_stats': {'mean': c * 0.2, 'var': c + 0.5}}
    g = jnp.cos(x)

    def f(m, v, x):
      y, upd = m.apply(v, x, mutable=['batch_stats'])
      return jnp.sum(y * g), upd

    vg = lambda m: jax.jit(jax.value_and_grad(  # noqa: E731
        functools.partial(f, m), (0, 1), has_aux=True))
    (l1, u1), g1 = vg(ours)(v, x)
    (l2, u2), g2 = vg(theirs)(v, x)
    np.testing.assert_allclose(l1, l2, rtol=1e-12)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=0, atol=1e-10),
                 (u1, g1), (u2, g2))


@pytest.mark.two_devices
def test_batchnorm_pmean_matches_flax():
  """Under pmap with axis_name (2 CPU devices from conftest), statistics and
  gradients agree with flax's synchronised BatchNorm."""
  n = jax.local_device_count()
  x = jax.random.normal(jax.random.PRNGKey(0), (n, 3, 4, 4, 5)) * 2 + 1
  g = jnp.cos(x)
  kw = dict(use_running_average=False, momentum=0.9, epsilon=1e-5, axis_name='i')
  out = []
  for m in (layers.BatchNorm(**kw), nn.BatchNorm(**kw)):
    v = m.init(jax.random.PRNGKey(0), x[0])

    def f(v, x, g, m=m):
      def loss(params, x):
        y, upd = m.apply({'params': params, 'batch_stats': v['batch_stats']}, x,
                         mutable=['batch_stats'])
        return jnp.sum(y * g), upd
      (_, upd), grads = jax.value_and_grad(loss, (0, 1), has_aux=True)(v['params'], x)
      return upd, grads

    out.append(jax.pmap(f, axis_name='i', in_axes=(None, 0, 0))(v, x, g))
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5),
               out[0], out[1])


def test_bfloat16_assembly_moves_bits_exactly():
  """The sub2 output assembly in bfloat16 (uint16 bits both ways) equals the
  float32 one and its transpose exactly on bfloat16 values."""
  rng = np.random.default_rng(3)
  b, h, w, co = 2, 5, 3, 4
  z = jnp.asarray(_bf16_round(rng, (b, h + 1, w + 1, 4 * co)))
  g = jnp.asarray(_bf16_round(rng, (b, 2 * h, 2 * w, co)))
  y_ref, vjp_ref = jax.vjp(lambda z: formulations._up_sub2_assemble(z, h, w, co), z)
  y, vjp = jax.vjp(formulations._assemble_bf16, z.astype(jnp.bfloat16))
  assert y.dtype == jnp.bfloat16
  np.testing.assert_array_equal(np.asarray(y.astype(jnp.float32)), np.asarray(y_ref))
  (dz,), (dz_ref,) = vjp(g.astype(jnp.bfloat16)), vjp_ref(g)
  np.testing.assert_array_equal(np.asarray(dz.astype(jnp.float32)), np.asarray(dz_ref))
