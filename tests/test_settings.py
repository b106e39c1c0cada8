"""One settings object (issue 11 item 3, review 2.2): one table of variables, one parser, one module reading the
environment, sections passed explicitly, `ateda config`, docs/settings.md generated from the table, no code
mutating os.environ (dbt's profile is rendered from Settings)."""

from __future__ import annotations

import ast
import json
import os
import threading
from pathlib import Path

import jinja2
import pytest
import yaml

from ateda import config

from ateda.warehouse import build as warehouse
from ateda.config import (VARIABLES, ConfigError, LocalSettings, MaintenanceSettings, RefreshSettings, Settings,
                          child_env, local_settings, settings_doc)
from ateda.warehouse import location

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "shared" / "ateda"


def test_docs_settings_page_is_generated_from_the_table():
    doc = (ROOT / "docs" / "settings.md").read_text()
    assert doc == settings_doc(), "docs/settings.md is stale: run `ateda config --doc > docs/settings.md`"
    for var in VARIABLES:
        assert f"`{var.name}`" in doc


def test_every_field_of_every_section_has_exactly_one_variable():
    config._check_table()
    assert len({v.name for v in VARIABLES}) == len(VARIABLES)


def test_every_variable_the_manifests_and_image_set_is_in_the_table():
    """A name set in knative/, deploy/ or docker/ that the table does not know would be silently ignored."""
    import re

    known = {v.name for v in VARIABLES} | {a for v in VARIABLES for a in v.aliases}
    found = set()
    for folder in ("knative", "deploy", "docker"):
        for path in (ROOT / folder).rglob("*"):
            if path.is_file() and path.suffix in (".yaml", ".yml", ".tpl", ""):
                text = path.read_text(errors="replace")  # `- name: X` in YAML, `ENV X=... \` lines in the Dockerfile
                found |= set(re.findall(r"name: (ATEDA_[A-Z0-9_]+)", text))
                found |= set(re.findall(r"(?m)^(?:ENV)?\s+(ATEDA_[A-Z0-9_]+)=", text))
    assert {"ATEDA_DBT_DIR", "ATEDA_EVENTS_DIR", "ATEDA_REFRESH_DEBOUNCE_MS"} <= found, "the scan is broken"
    assert found - known == set()


def _environment_readers(path: Path) -> list[str]:
    """Every ``os.environ`` / ``os.getenv`` / ``environ`` / ``getenv`` name in a module, with its line."""
    hits = []
    for node in ast.walk(ast.parse(path.read_text())):
        name = node.attr if isinstance(node, ast.Attribute) else node.id if isinstance(node, ast.Name) else None
        if name in ("environ", "getenv", "putenv", "unsetenv"):
            hits.append(f"{path.name}:{node.lineno}")
        if isinstance(node, ast.ImportFrom) and node.module == "os":
            hits += [f"{path.name}:{node.lineno}" for a in node.names if a.name in ("environ", "getenv")]
    return hits


def test_only_config_reads_the_environment():
    hits = [h for p in sorted(PACKAGE.rglob("*.py")) if p.name != "config.py" for h in _environment_readers(p)]
    assert hits == [], f"environment read outside ateda/config.py: {hits}"
    fn_hits = [h for p in sorted((ROOT / "functions").rglob("*.py")) for h in _environment_readers(p)]
    assert fn_hits == [], f"environment read in a function: {fn_hits}"


@pytest.mark.parametrize("name, raw", [
    ("ATEDA_COMPACT_MIN_FILES", "4.7"),  # was truncated to 4
    ("ATEDA_SNAPSHOT_RETAIN_LAST", "2.5"),  # was truncated to 2
    ("ATEDA_COMPACT_MAX_BINS", "many"),
    ("ATEDA_REFRESH_DEBOUNCE_MS", "0.5"),  # was a bare ValueError
    ("ATEDA_REFRESH_RETRIES", "three"),
    ("ATEDA_COMPACT_TARGET_MB", "big"),
    ("ATEDA_CHUNK_ALERTS", "1e3"),
    ("ATEDA_BRIDGE_INSECURE_OPEN", "maybe"),
    ("ATEDA_METRICS_PORT", "http"),
    ("ATEDA_STARROCKS_PORT", "x"),
    ("AWS_REGION", None),  # strings are never malformed: control
])
def test_a_malformed_value_raises_config_error_naming_the_variable(name, raw):
    if raw is None:
        assert Settings.from_env({name: "eu-west-3"}).s3_region == "eu-west-3"
        return
    with pytest.raises(ConfigError, match=name) as info:
        Settings.from_env({"ATEDA_HOME": "/tmp/h", name: raw})
    assert repr(raw) in str(info.value)


def test_metrics_port_of_a_function_is_parsed_and_checked():
    env = {"ATEDA_METRICS_PORT_SPLIT": "9101", "ATEDA_METRICS_PORT_BRONZE": "", "ATEDA_MAINTENANCE_EVERY_S": "1.5"}
    local = local_settings(env)
    assert local == LocalSettings(maintenance_every_s=1.5, metrics_ports=(("SPLIT", 9101),))
    assert local.metrics_port("split") == 9101 and local.metrics_port("bronze") == 0
    with pytest.raises(ConfigError, match="ATEDA_METRICS_PORT_SPLIT"):
        local_settings({"ATEDA_METRICS_PORT_SPLIT": "auto"})


def test_sections_are_frozen_and_parsed_in_their_units():
    s = Settings.from_env({"ATEDA_HOME": "/tmp/h", "ATEDA_REFRESH_DEBOUNCE_MS": "300", "ATEDA_REFRESH_RETRIES": "0",
                           "ATEDA_DBT_TARGET": "cluster", "ATEDA_COMPACT_QUIET_MINUTES": "0.5",
                           "ATEDA_COMPACT_MIN_FILES": "2", "ATEDA_METRICS_ADDR": "127.0.0.1",
                           "AWS_DEFAULT_REGION": "eu-central-1", "ATEDA_DBT_DIR": "/opt/dbt"})
    assert s.refresh == RefreshSettings(debounce_s=0.3, retries=0, target="cluster")
    assert s.maintenance == MaintenanceSettings(quiet_minutes=0.5, min_files=2)
    assert s.metrics.addr == "127.0.0.1" and s.metrics.port == 9464
    assert s.s3_region == "eu-central-1" and s.paths.dbt_dir == Path("/opt/dbt")
    with pytest.raises(AttributeError):
        s.refresh.retries = 5  # type: ignore[misc]


def test_as_env_reproduces_the_settings_in_a_child():
    s = Settings.from_env({"ATEDA_HOME": "/tmp/h", "ATEDA_REFRESH_BACKOFF_MS": "250", "ATEDA_BRIDGE_INSECURE_OPEN": "1",
                           "ATEDA_S3_ENDPOINT": "http://minio:9000", "AWS_SECRET_ACCESS_KEY": "k3y-secret",
                           "ATEDA_COMPACT_TARGET_MB": "64.5", "ATEDA_STARROCKS_PASSWORD": "pw"})
    assert Settings.from_env(s.as_env()) == s
    assert Settings.from_env(Settings(home=Path("/tmp/h")).resolved().as_env()) == Settings(home=Path("/tmp/h")).resolved()


def test_a_child_gets_the_settings_not_the_parents_environment(monkeypatch):
    monkeypatch.setenv("ATEDA_REFRESH_DEBOUNCE_MS", "1")
    monkeypatch.setenv("ATEDA_METRICS_PORT_SPLIT", "9999")
    monkeypatch.setenv("ATEDA_BRIDGE_TOKEN", "parent-token")
    s = Settings(home=Path("/tmp/h"), refresh=RefreshSettings(debounce_s=0.25)).resolved()
    env = child_env(s, K_SINK="http://broker")
    assert env["ATEDA_REFRESH_DEBOUNCE_MS"] == "250" and env["K_SINK"] == "http://broker"
    assert "ATEDA_METRICS_PORT_SPLIT" not in env and "ATEDA_BRIDGE_TOKEN" not in env
    assert env["PATH"] == os.environ["PATH"]
    assert Settings.from_env(env).refresh.debounce_s == 0.25


def test_the_workers_take_their_section_from_the_settings_they_are_given(tmp_path, monkeypatch):
    from ateda.steps.dbt_refresh import RefreshWorker

    monkeypatch.setenv("ATEDA_REFRESH_DEBOUNCE_MS", "99000")  # not read: the settings passed in decide
    s = Settings(home=tmp_path / "home", refresh=RefreshSettings(debounce_s=0.05, retries=1)).resolved()
    w = RefreshWorker(s, lambda *a: None)
    assert w.config == RefreshSettings(debounce_s=0.05, retries=1)


def test_ateda_config_prints_the_effective_settings_with_secrets_masked(tmp_path, monkeypatch, capsys):
    from ateda.cli import main

    monkeypatch.setenv("ATEDA_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("ATEDA_CATALOG_URI", "postgresql+psycopg2://ateda:Pa55word-xyz@db:5432/cat")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "aws-secret-value")
    monkeypatch.setenv("ATEDA_BRIDGE_TOKEN", "bridge-token-value")
    monkeypatch.setenv("ATEDA_STARROCKS_PASSWORD", "starrocks-pw")
    monkeypatch.setenv("ATEDA_REFRESH_DEBOUNCE_MS", "300")
    monkeypatch.setenv("ATEDA_METRICS_PORT_BRONZE", "9102")
    assert main(["config", "--json"]) == 0
    out = capsys.readouterr().out
    for secret in ("Pa55word-xyz", "aws-secret-value", "bridge-token-value", "starrocks-pw"):
        assert secret not in out
    got = json.loads(out)
    assert got["general"]["ATEDA_CATALOG_URI"] == "postgresql+psycopg2://ateda:***@db:5432/cat"
    assert got["general"]["AWS_SECRET_ACCESS_KEY"] == "***" and got["dbt"]["ATEDA_STARROCKS_PASSWORD"] == "***"
    assert got["general"]["ATEDA_HOME"] == str(tmp_path / "home")
    assert got["general"]["ATEDA_LAKE"] == str(tmp_path / "home" / "lake")  # the effective (resolved) value
    assert got["refresh"]["ATEDA_REFRESH_DEBOUNCE_MS"] == 300 and got["local"]["ATEDA_METRICS_PORT_BRONZE"] == 9102
    assert main(["config"]) == 0
    text = capsys.readouterr().out
    assert "[refresh]" in text and "ATEDA_REFRESH_DEBOUNCE_MS = 300" in text and "starrocks-pw" not in text
    assert main(["config", "--doc"]) == 0
    assert capsys.readouterr().out == settings_doc()


def test_dbt_profile_is_rendered_from_settings_not_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("ATEDA_DUCKDB_MEMORY_LIMIT", "9GB")  # the process's environment: not what dbt gets
    monkeypatch.setenv("ATEDA_STARROCKS_HOST", "from-environ")
    odd = 'p"w{{ x }}%\\n'
    s = Settings(home=tmp_path / "home", duckdb_memory_limit="123MB", duckdb_threads=1,
                 dbt=config.DbtSettings(starrocks_host="sr", starrocks_port=9131, starrocks_password=odd)).resolved()
    before = dict(os.environ)
    folder = warehouse.dbt_profile(s, "cluster")
    assert dict(os.environ) == before
    path = folder / "profiles.yml"
    assert path.stat().st_mode & 0o077 == 0  # the cluster profile holds a password
    profile = yaml.safe_load(path.read_text())["ateda"]
    assert profile["target"] == "cluster"
    local, cluster = profile["outputs"]["local"], profile["outputs"]["cluster"]
    assert local["path"] == str(location.duckdb_path(s))
    assert local["config_options"]["memory_limit"] == "123MB"
    # dbt's as_number stays for dbt's own rendering, on the value from the settings
    assert local["config_options"]["threads"] == "{{ '1' | as_number }}"
    assert cluster["host"] == "sr" and cluster["port"] == "{{ '9131' | as_number }}"
    assert jinja2.Template(cluster["password"]).render() == odd  # dbt renders the profile again: stays literal


def test_a_dbt_run_leaves_os_environ_alone(tmp_path):
    """dbt runs in-process inside a threaded server: the run must not write the environment other threads read."""
    s = Settings(home=tmp_path / "home", duckdb_memory_limit="200MB").resolved()
    seen: list[dict] = []
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            seen.append({k: v for k, v in os.environ.items() if k.startswith("ATEDA_") or k == "DO_NOT_TRACK"})
            stop.wait(0.005)

    before = {k: v for k, v in os.environ.items() if k.startswith("ATEDA_") or k == "DO_NOT_TRACK"}
    t = threading.Thread(target=watch)
    t.start()
    try:
        res = warehouse.run_dbt(s, ["parse"])
    finally:
        stop.set()
        t.join()
    assert res.success, res.exception
    assert len(seen) > 1 and all(x == before for x in seen)
