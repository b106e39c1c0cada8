"""Argument types the commands share: a bad value is argparse's one-line error (exit 2), never a traceback later."""

from __future__ import annotations

import argparse


def positive_int(text: str) -> int:
    """An integer > 0 (counts, dots per inch)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text} must be greater than 0")
    return value


def non_negative_int(text: str) -> int:
    """An integer >= 0 (a count where 0 means none)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text} must be 0 or more")
    return value
