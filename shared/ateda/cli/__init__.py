"""``ateda``: run the platform on one machine, ingest files, look at what landed.

One module per command group; each has ``register(sub)`` (its sub-commands and options) and ``cmd_*`` handlers that
parse nothing else and print. The library code they call lives outside ``cli/``.
"""

from __future__ import annotations

import argparse
import sys

from ateda.cli import catalogs, dev, ingest, lake, local, maintenance, science, settings, stamps
from ateda.config import Settings
from ateda.errors import ConfigError
from ateda.redact import mask
from ateda.serving.logs import configure_logging


def main(argv: list[str] | None = None) -> int:
    """Run one command. A user's mistake (a setting, a path) is one line on stderr and exit 2, never a traceback."""
    args = _parser().parse_args(argv)
    try:
        configure_logging()
        return args.func(args, Settings.from_env()) or 0
    except (ConfigError, FileNotFoundError, NotADirectoryError, IsADirectoryError) as exc:
        print(f"ateda {args.command}: {mask(_said(exc))}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # output piped into `head` & co.: stop quietly
        sys.stderr.close()
        return 0


def _said(exc: Exception) -> str:
    if isinstance(exc, OSError) and exc.filename:
        return f"{exc.strerror}: {exc.filename}"
    return str(exc)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ateda", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(required=True, metavar="COMMAND", dest="command")
    for group in (local, ingest, lake, stamps, dev, settings, science, catalogs, maintenance):  # the order of --help
        group.register(sub)
    return p
