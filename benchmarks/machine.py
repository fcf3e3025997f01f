"""What every benchmark JSON says about where it ran: CPU, ISA, JAX, load."""
from __future__ import annotations

import os
import platform
import resource
import time


def cpu_info() -> dict:
  """CPU model name, family / model numbers (a hypervisor may hide the name's
  model number: family 26 is AMD Zen 5), core count and whether avx2 / avx512f
  / amx are present."""
  name, flags, ids = platform.processor() or platform.machine(), set(), {}
  try:
    with open('/proc/cpuinfo') as f:
      for line in f:
        key, _, value = line.partition(':')
        key = key.strip()
        if key == 'model name' and name in ('', platform.machine()):
          name = value.strip()
        elif key == 'flags' and not flags:
          flags = set(value.split())
        elif key in ('cpu family', 'model') and key not in ids:
          ids[key] = value.strip()
  except OSError:
    pass
  return {'cpu': name, 'cpu_family_model': '/'.join(ids.get(k, '?') for k in ('cpu family', 'model'))
          if ids else None, 'cores': os.cpu_count(), 'avx2': 'avx2' in flags,
          'avx512': 'avx512f' in flags, 'amx': any(f.startswith('amx') for f in flags)}


def git_commit() -> str | None:
  """The checkout's commit (short hash, '+' if the tree has changes), or None."""
  import subprocess  # pylint: disable=g-import-not-at-top
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  try:
    head = subprocess.run(['git', '-C', root, 'rev-parse', '--short', 'HEAD'], check=True,
                          capture_output=True, text=True, timeout=10).stdout.strip()
    dirty = subprocess.run(['git', '-C', root, 'status', '--porcelain', '--untracked-files=no'],
                           check=True, capture_output=True, text=True, timeout=10).stdout.strip()
  except (OSError, subprocess.SubprocessError):
    return None
  return head + ('+' if dirty else '')


def runtime_info() -> dict:
  """cpu_info plus the JAX / jaxlib versions, the device, the date and the commit."""
  import jax  # pylint: disable=g-import-not-at-top
  import jaxlib  # pylint: disable=g-import-not-at-top
  device = jax.devices()[0]
  return dict(cpu_info(), jax=jax.__version__, jaxlib=jaxlib.__version__,
              device=f'{device.platform}: {device.device_kind}',
              python=platform.python_version(), date=time.strftime('%Y-%m-%d'),
              commit=git_commit())


def compiled_flops(compiled) -> float | None:
  """FLOPs of one call of a compiled JAX function, by XLA's cost analysis
  (None if the backend gives none)."""
  try:
    cost = compiled.cost_analysis()
  except Exception:  # pylint: disable=broad-except
    return None
  if isinstance(cost, (list, tuple)):
    cost = cost[0] if cost else None
  return float(cost['flops']) if cost and 'flops' in cost else None


class CpuSnap:
  """Share of the whole machine used by other processes since creation, and
  the share the hypervisor stole (time this VM's CPUs waited for the host:
  other guests' load, which no process in here shows)."""

  def __init__(self):
    self.t, self.own = time.perf_counter(), self._own()
    self.busy, self.steal = self._stat()

  @staticmethod
  def _stat():
    """(busy, steal) CPU seconds of the whole machine so far, from /proc/stat
    (None for what it does not give)."""
    try:
      with open('/proc/stat') as f:
        v = [int(x) / os.sysconf('SC_CLK_TCK') for x in f.readline().split()[1:]]
    except (OSError, ValueError):
      v = []
    return (v[0] + v[1] + v[2] + v[5] + v[6] if len(v) > 6 else None,
            v[7] if len(v) > 7 else None)

  def steal_frac(self):
    """Share of the CPUs' time stolen by the host since creation (None off Linux)."""
    s, wall = self._stat()[1], time.perf_counter() - self.t
    if s is None or self.steal is None or wall <= 0:
      return None
    return round(max(0.0, s - self.steal) / (wall * (os.cpu_count() or 1)), 3)

  @staticmethod
  def _own():
    s, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime

  def other_frac(self):
    b = self._stat()[0]
    wall = time.perf_counter() - self.t
    if b is None or self.busy is None or wall <= 0:
      return None
    other = max(0.0, (b - self.busy) - (self._own() - self.own))
    return round(other / (wall * (os.cpu_count() or 1)), 3)
