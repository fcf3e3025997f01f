"""User-facing errors: one clear message and exit code 2, never a traceback."""
from __future__ import annotations

import functools
import sys

EXIT_USER_ERROR = 2


class UserError(Exception):
  """A mistake the user can fix (missing data, bad shape, corrupt file, ...).

  Command-line entry points print `error: <message>` on stderr and exit with
  code 2 instead of showing a traceback.
  """


def cli(main):
  """Decorates a script's `main(argv)` so a `UserError` becomes exit code 2."""

  @functools.wraps(main)
  def wrapper(*args, **kwargs):
    try:
      return main(*args, **kwargs)
    except UserError as e:
      print(f'error: {e}', file=sys.stderr)
      sys.exit(EXIT_USER_ERROR)
    except KeyboardInterrupt:
      print('interrupted', file=sys.stderr)
      sys.exit(130)

  return wrapper
