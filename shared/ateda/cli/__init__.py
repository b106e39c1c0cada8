"""``ateda``: run the platform on one machine, ingest files, look at what landed.

One module per command group; each has ``register(sub)`` (its sub-commands and options) and ``cmd_*`` handlers that
parse nothing else and print. The library code they call lives outside ``cli/``.
"""

from __future__ import annotations

import argparse

from ateda.cli import catalogs, dev, ingest, lake, local, maintenance, science, settings
from ateda.config import Settings
from ateda.serving.logs import configure_logging


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    configure_logging()
    return args.func(args, Settings.from_env()) or 0


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ateda", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(required=True, metavar="COMMAND")
    for group in (local, ingest, lake, dev, settings, science, catalogs, maintenance):  # the order of --help
        group.register(sub)
    return p
