"""The ``ateda`` console script: the CLI, with Ctrl-C and a missing optional dependency handled even while the CLI
is still importing its libraries (pyiceberg, pyarrow, DuckDB: a second or two in which a user may press Ctrl-C)."""

from __future__ import annotations

import sys


def run() -> None:
    try:
        from ateda.cli import main  # deferred on purpose: the imports themselves may be interrupted or fail
    except KeyboardInterrupt:
        print("\nateda: interrupted; run again to resume", file=sys.stderr)
        sys.exit(130)
    except ModuleNotFoundError as exc:  # a core-only install (a function image) has no CLI extras
        print(f"ateda: the CLI needs the `local` extra ({exc.name} is missing): pip install 'ateda[local]'",
              file=sys.stderr)
        sys.exit(2)
    sys.exit(main())
