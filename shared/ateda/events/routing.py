"""Routing by the Knative Trigger manifests in ``knative/``: one source of truth for both modes.

Supports the Trigger ``filters`` dialects exact/prefix/suffix/all/any/not (and the older exact-only
``filter.attributes``), and the ``delivery`` spec: retry, backoffPolicy (linear|exponential), backoffDelay (ISO-8601
duration), deadLetterSink.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ateda.config import REPO_ROOT


@dataclass(frozen=True)
class Delivery:
    retry: int = 0
    backoff_policy: str = "exponential"
    backoff_delay: float = 0.2
    dead_letter_sink: str | None = None

    def delay(self, attempt: int) -> float:
        """Wait before retry number ``attempt`` (1-based), as Knative computes it."""
        if self.backoff_policy == "linear":
            return self.backoff_delay * attempt
        return self.backoff_delay * 2 ** attempt

    def jittered(self, attempt: int) -> float:
        """:meth:`delay` times a random factor in [0.5, 1.5): events that failed together (the chunks of one
        poisoned batch) are not retried together again."""
        return self.delay(attempt) * random.uniform(0.5, 1.5)


@dataclass(frozen=True)
class Trigger:
    name: str
    broker: str
    subscriber: str  # Knative Service name
    filters: tuple[dict, ...]
    delivery: Delivery

    def matches(self, event: dict) -> bool:
        return all(_match(f, event) for f in self.filters)


def _match(f: dict, event: dict) -> bool:
    (dialect, arg), = f.items()
    if dialect == "exact":
        return all(k in event and str(event[k]) == str(v) for k, v in arg.items())
    if dialect == "prefix":
        return all(k in event and str(event[k]).startswith(v) for k, v in arg.items())
    if dialect == "suffix":
        return all(k in event and str(event[k]).endswith(v) for k, v in arg.items())
    if dialect == "all":
        return all(_match(x, event) for x in arg)
    if dialect == "any":
        return any(_match(x, event) for x in arg)
    if dialect == "not":
        return not _match(arg, event)
    raise ValueError(f"unsupported Trigger filter dialect {dialect!r}")


_DURATION = re.compile(r"^P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?)?$")


def iso_seconds(text: str) -> float:
    """Seconds in an ISO-8601 duration such as ``PT0.5S`` or ``PT1M``."""
    m = _DURATION.match(text)
    if not m:
        raise ValueError(f"not an ISO-8601 duration: {text!r}")
    d, h, mi, s = (float(x) if x else 0.0 for x in m.groups())
    return ((d * 24 + h) * 60 + mi) * 60 + s


def _delivery(spec: dict[str, Any] | None) -> Delivery:
    spec = spec or {}
    sink = (spec.get("deadLetterSink") or {})
    sink_name = (sink.get("ref") or {}).get("name") or sink.get("uri")
    return Delivery(
        retry=int(spec.get("retry", 0)),
        backoff_policy=spec.get("backoffPolicy", "exponential"),
        backoff_delay=iso_seconds(spec["backoffDelay"]) if spec.get("backoffDelay") else 0.2,
        dead_letter_sink=sink_name,
    )


def load_triggers(folder: Path) -> list[Trigger]:
    """Every Trigger document in ``folder/*.yaml``."""
    triggers = []
    for path in sorted(Path(folder).glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if not doc or doc.get("kind") != "Trigger":
                continue
            spec = doc["spec"]
            filters = list(spec.get("filters") or [])
            old = (spec.get("filter") or {}).get("attributes")
            if old:
                filters.append({"exact": old})
            triggers.append(Trigger(
                name=doc["metadata"]["name"], broker=spec["broker"],
                subscriber=spec["subscriber"]["ref"]["name"], filters=tuple(filters),
                delivery=_delivery(spec.get("delivery")),
            ))
    return triggers


def knative_dir() -> Path:
    return REPO_ROOT / "knative"
