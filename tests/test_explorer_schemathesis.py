"""schemathesis against the explorer's own OpenAPI spec, served by real uvicorn over a real warehouse (ZTF alerts
and a generated Rubin night): whatever request the spec allows or almost allows, the answer is never a 5xx. A
bounded number of examples per operation keeps the module short."""

from __future__ import annotations

from dataclasses import replace

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

from conftest import explorer_server

EXAMPLES = 20  # per operation


@pytest.fixture(scope="module")
def base_url(explorer_home):
    s = replace(explorer_home, explorer=replace(explorer_home.explorer, sql_timeout_s=2.0))
    with explorer_server(s) as (_, base):
        yield base


@pytest.fixture
def api_schema(base_url):
    return schemathesis.openapi.from_url(f"{base_url}/openapi.json")


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_server_error_on_any_generated_request(case, base_url):
    case.call_and_validate(base_url=base_url, checks=[not_a_server_error], timeout=30)
