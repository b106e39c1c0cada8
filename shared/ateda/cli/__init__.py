"""``ateda``: run the platform on one machine, ingest files, look at what landed.

One module per command group; each has ``register(sub)`` (its sub-commands and options) and ``cmd_*`` handlers that
parse nothing else and print. The library code they call lives outside ``cli/``.

Manners, kept here once for every command: a user's mistake (a bad option, a setting, a path, an unknown task) is
one line on stderr saying what to do, exit 2; any other failure is one line too, exit 1; ``--debug`` (anywhere on
the line) shows the traceback instead. Ctrl-C says how to resume and exits 130. Output piped into ``head`` & co.
stops quietly.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from importlib.metadata import PackageNotFoundError, version

from ateda.cli import catalogs, dev, ingest, lake, local, maintenance, science, serve, settings, stamps
from ateda.config import Settings
from ateda.errors import AtedaError, BadInput, ConfigError
from ateda.redact import mask
from ateda.serving.logs import configure_logging

USER_ERRORS = (ConfigError, BadInput, FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError)
INTERRUPTED = 130  # the shell's code for a process ended by SIGINT


class Parser(argparse.ArgumentParser):
    """argparse with a one-line error (what was wrong, where the help is) instead of usage + error."""

    def error(self, message: str) -> None:  # type: ignore[override]
        print(f"{self.prog}: {message} (see `{self.prog} --help`)", file=sys.stderr)
        sys.exit(2)


def main(argv: list[str] | None = None) -> int:
    """Run one command; see the module docstring for how errors, Ctrl-C and closed pipes end it."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv[: argv.index("--")] if "--" in argv else "--debug" in argv
    argv = [a for a in argv if a != "--debug"] if debug else argv
    command = "ateda"
    try:
        args = _parser().parse_args(argv)
        command = f"ateda {args.command}"
        configure_logging()
        return args.func(args, Settings.from_env()) or 0
    except KeyboardInterrupt:
        if debug:
            traceback.print_exc()
        print(f"\n{command}: interrupted; run again to resume", file=sys.stderr)
        return INTERRUPTED
    except BrokenPipeError:  # output piped into `head` & co.: stop quietly, and keep the exit flush quiet too
        _quiet_stdout()
        return 0
    except USER_ERRORS as exc:
        return _fail(command, exc, debug, code=2)
    except AtedaError as exc:
        return _fail(command, exc, debug, code=1)
    except Exception as exc:  # noqa: BLE001 - a bug: one line here, the traceback with --debug
        return _fail(command, exc, debug, code=1, bug=True)


def _fail(command: str, exc: BaseException, debug: bool, code: int, bug: bool = False) -> int:
    if debug:
        traceback.print_exc()
    said = mask(_said(exc))
    if bug:
        said = f"unexpected {type(exc).__name__}: {said} (run again with --debug for the traceback)"
    print(f"{command}: {said}", file=sys.stderr)
    return code


def _said(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.filename:
        return f"{exc.strerror}: {exc.filename}"
    return " ".join(str(exc).split()) or type(exc).__name__


def _quiet_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush into the closed pipe says nothing."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def _version() -> str:
    try:
        return version("ateda")
    except PackageNotFoundError:  # running from a checkout that was never installed
        return "unknown (not installed)"


def _parser() -> argparse.ArgumentParser:
    p = Parser(prog="ateda", description="Run the platform on one machine, ingest files, look at what landed. "
               "`ateda COMMAND --help` describes each command.")
    p.add_argument("--version", action="version", version=f"ateda {_version()}")
    p.add_argument("--debug", action="store_true", help="on an error, show the full traceback (allowed anywhere)")
    sub = p.add_subparsers(required=True, metavar="COMMAND", dest="command")
    for group in (local, ingest, lake, stamps, dev, settings, science, serve, catalogs, maintenance):  # the order of --help
        group.register(sub)
    return p
