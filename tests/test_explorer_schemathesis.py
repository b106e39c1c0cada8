"""schemathesis against the explorer's own OpenAPI spec, served by real uvicorn over a real warehouse (ZTF alerts
and a generated Rubin night): whatever request the spec allows or almost allows, the answer is never a 5xx. A
bounded number of examples per operation keeps the module short."""

from __future__ import annotations

from dataclasses import replace

import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error

from conftest import explorer_server

EXAMPLES = 10  # per operation (each 404 of an unknown object or stamp scans bronze: ~0.3 s)


def fuzz(base_url: str, examples: int = EXAMPLES) -> tuple[int, list[str]]:
    """Every operation of the served spec, ``examples`` generated requests each: (requests sent, failures)."""
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json")
    sent, failures = [0], []
    for result in schema.get_all_operations():
        operation = result.ok()

        @given(case=operation.as_strategy())
        @settings(max_examples=examples, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        def run(case) -> None:  # noqa: ANN001
            sent[0] += 1
            try:
                case.call_and_validate(base_url=base_url, checks=[not_a_server_error], timeout=30)
            except Exception as exc:  # noqa: BLE001 - collected, every operation gets its turn
                failures.append(f"{operation.label}: {' '.join(str(exc).split())[:300]}")
                raise

        try:
            run()
        except Exception:  # noqa: BLE001 - hypothesis re-raises the shrunk failure: already recorded
            pass
    return sent[0], failures


def test_no_server_error_on_any_generated_request(explorer_home):
    s = replace(explorer_home, explorer=replace(explorer_home.explorer, sql_timeout_s=2.0))
    with explorer_server(s) as (_, base):
        sent, failures = fuzz(base)
    assert sent >= 8 * EXAMPLES
    assert not failures, "\n".join(failures[:10])
