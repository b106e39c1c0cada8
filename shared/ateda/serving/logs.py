"""Process logging for functions, the local runtime and the CLI: one format and level, secrets masked in every record."""

from __future__ import annotations

import functools
import logging
import threading

from ateda.config import settings
from ateda.redact import mask

_lock = threading.Lock()


@functools.cache
def configure_logging() -> None:
    """Log format and level, and secrets masked in every record of the process (any logger, any handler)."""
    logging.basicConfig(level=settings().log_level,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("pyiceberg").setLevel(logging.WARNING)
    install_secret_masking()


def configured_secrets() -> tuple[str, ...]:
    """The literal secrets of the current settings (every secret of the table, the catalog URI's password)."""
    try:
        return settings().secrets()
    except Exception:  # noqa: BLE001 - a malformed setting must not stop a log line
        return ()


_masking_installed = False


def install_secret_masking() -> None:
    """Mask secrets (:func:`redact.mask`: URI passwords, ``key=value`` secrets, :func:`configured_secrets`) in the
    message, traceback and stack of every log record when it is made, so no handler (ours, gunicorn's, Flask's)
    ever sees them. Idempotent."""
    global _masking_installed
    with _lock:
        if _masking_installed:
            return
        _masking_installed = True
    make = logging.getLogRecordFactory()
    formatter = logging.Formatter()

    def factory(*args, **kwargs) -> logging.LogRecord:  # noqa: ANN002, ANN003
        record = make(*args, **kwargs)
        try:
            secrets = configured_secrets()
            record.msg, record.args = mask(record.getMessage(), secrets), ()
            if record.exc_info and not record.exc_text:
                record.exc_text = mask(formatter.formatException(record.exc_info), secrets)
            if record.stack_info:
                record.stack_info = mask(record.stack_info, secrets)
        except Exception:  # noqa: BLE001 - logging must never raise; the record stays as it was
            pass
        return record

    logging.setLogRecordFactory(factory)
