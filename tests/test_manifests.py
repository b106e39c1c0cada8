"""Offline checks of the Kubernetes/Knative manifests in knative/ and the Kind config in kind/.

Nothing here talks to a cluster. Knative kinds are validated against the CRD schemas kept in
../shared/k8s/crds (made strict: an unknown field is an error wherever the CRD does not say
``x-kubernetes-preserve-unknown-fields``, as ``kubectl apply`` with strict field validation would
report it); core kinds against kubernetes-validate's schemas. The rest checks the wiring the code
relies on: names, event types, delivery, images, environment, scaling.
"""

from __future__ import annotations

import copy
import functools
import json
import re
from pathlib import Path
from typing import Any, Iterator

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
KNATIVE_DIR = ROOT / "knative"
KIND_CONFIG = ROOT / "kind" / "cluster.yaml"
EVENT_CATALOG = ROOT / "events" / "catalog.yaml"
CRD_DIR = ROOT.parent / "shared" / "k8s" / "crds"

K8S_VERSION = "1.33"  # kubernetes-validate picks the newest schema set not newer than this
NAMESPACE = "ateda"
BROKER = "ateda"
DEAD_LETTER = "ateda-dead-letter"
EMITS_LABEL = "ateda.dev/emits-events"

EVENT_TYPES = {
    "dev.ateda.object.created",
    "dev.ateda.alerts.staged",
    "dev.ateda.bronze.committed",
    "dev.ateda.input.rejected",
    "dev.ateda.silver.refreshed",
    "dev.ateda.crossmatch.committed",
    "dev.ateda.catalog.registered",
    "dev.knative.sources.ping",
}

# Knative Service -> (function folder, functions-framework signature type, emits events?)
SERVICES = {
    "ateda-minio-bridge": ("minio_bridge", "http", True),
    "ateda-split": ("split", "cloudevent", True),
    "ateda-bronze": ("bronze", "cloudevent", True),
    "ateda-dead-letter": ("dead_letter", "cloudevent", False),
    "ateda-dbt-refresh": ("dbt_refresh", "cloudevent", True),
    "ateda-crossmatch": ("crossmatch", "cloudevent", True),
    "ateda-maintenance": ("maintenance", "cloudevent", True),  # reconciliation re-announces lost objects
}
IMAGE_TAG = "0.1.0"
# Knative Services that are apps, not functions (no functions-framework, no Trigger): name -> the env they need
APPS = {
    "ateda-explorer": {"ATEDA_EXPLORER_TOKEN", "ATEDA_LAKE", "ATEDA_WAREHOUSE", "ATEDA_CATALOG_URI",
                       "ATEDA_S3_ENDPOINT", "ATEDA_EXPLORER_BACKEND", "ATEDA_STARROCKS_HOST", "ATEDA_STARROCKS_PORT",
                       "ATEDA_STARROCKS_USER", "ATEDA_STARROCKS_PASSWORD"},
}

# Trigger -> (subscriber Service, event type)
TRIGGERS = {
    "split-on-object-created": ("ateda-split", "dev.ateda.object.created"),
    "bronze-on-alerts-staged": ("ateda-bronze", "dev.ateda.alerts.staged"),
    "refresh-on-bronze-committed": ("ateda-dbt-refresh", "dev.ateda.bronze.committed"),
    "crossmatch-on-bronze-committed": ("ateda-crossmatch", "dev.ateda.bronze.committed"),
    "refresh-on-crossmatch-committed": ("ateda-dbt-refresh", "dev.ateda.crossmatch.committed"),
    "crossmatch-on-catalog-registered": ("ateda-crossmatch", "dev.ateda.catalog.registered"),
    "maintenance-on-ping": ("ateda-maintenance", "dev.knative.sources.ping"),
}

ENV_PREFIXES = ("ATEDA_", "AWS_", "K_", "WORKERS", "THREADS", "FUNCTION_", "PORT")
ENV_NAMES = {
    "ATEDA_BUCKET",
    "ATEDA_WAREHOUSE",
    "ATEDA_LAKE",
    "ATEDA_CATALOG_URI",
    "ATEDA_S3_ENDPOINT",
    "AWS_REGION",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "ATEDA_BRIDGE_TOKEN",
    "ATEDA_BRIDGE_MAX_BODY",
    "WORKERS",
    "THREADS",
    "ATEDA_CHUNK_ALERTS",
    "ATEDA_COMMIT_WINDOW_MS",
    "ATEDA_COMMIT_MAX_ALERTS",
    "ATEDA_BATCH_WINDOW_MS",
    "ATEDA_BATCH_MAX_OBJECTS",
    "FUNCTION_TARGET",
    "FUNCTION_SIGNATURE_TYPE",
    "ATEDA_DBT_TARGET",
    "ATEDA_REFRESH_DEBOUNCE_MS",
    "ATEDA_COMPACT_TARGET_MB",
    "ATEDA_COMPACT_QUIET_MINUTES",
    "ATEDA_SNAPSHOT_RETAIN_HOURS",
    "ATEDA_ORPHAN_GRACE_HOURS",
    "ATEDA_MAINTENANCE_BUDGET_S",
    "ATEDA_EXPLORER_TOKEN",
    "ATEDA_EXPLORER_SQL_TIMEOUT_S",
    "ATEDA_EXPLORER_BACKEND",
    "ATEDA_STARROCKS_HOST",
    "ATEDA_STARROCKS_PORT",
    "ATEDA_STARROCKS_USER",
    "ATEDA_STARROCKS_PASSWORD",
    "ATEDA_ICEBERG_CATALOG",
}
# Set by Knative (PORT, K_SERVICE, ...) or by the SinkBinding (K_SINK, K_CE_OVERRIDES): never by hand.
RESERVED_ENV = {"PORT", "K_SERVICE", "K_CONFIGURATION", "K_REVISION", "K_SINK", "K_CE_OVERRIDES"}
SECRET_ENV = {
    "AWS_ACCESS_KEY_ID": ("ateda-s3", "AWS_ACCESS_KEY_ID"),
    "AWS_SECRET_ACCESS_KEY": ("ateda-s3", "AWS_SECRET_ACCESS_KEY"),
    "ATEDA_BRIDGE_TOKEN": ("ateda-bridge-token", "token"),
    "ATEDA_EXPLORER_TOKEN": ("ateda-explorer-token", "token"),
    "ATEDA_STARROCKS_PASSWORD": ("starrocks-superset", "password"),  # the read-only user's (docs/explorer.md)
}
# a Service whose Secret differs from SECRET_ENV's: the dbt refresh writes the warehouse, as StarRocks' root
SECRET_ENV_OF = {("ateda-dbt-refresh", "ATEDA_STARROCKS_PASSWORD"): ("starrocks-root", "password")}
FIXED_ENV = {
    "ATEDA_BUCKET": "alerts",
    "ATEDA_CATALOG_URI": "http://nessie.ateda.svc.cluster.local:19120/iceberg",
    "ATEDA_S3_ENDPOINT": "http://minio.ateda.svc.cluster.local:9000",
    "AWS_REGION": "us-east-1",
    "FUNCTION_TARGET": "handle",
}
INT_ENV = {
    "WORKERS",
    "THREADS",
    "ATEDA_CHUNK_ALERTS",
    "ATEDA_COMMIT_WINDOW_MS",
    "ATEDA_COMMIT_MAX_ALERTS",
    "ATEDA_BATCH_WINDOW_MS",
    "ATEDA_BATCH_MAX_OBJECTS",
    "ATEDA_REFRESH_DEBOUNCE_MS",
    "ATEDA_COMPACT_TARGET_MB",
    "ATEDA_COMPACT_QUIET_MINUTES",
    "ATEDA_SNAPSHOT_RETAIN_HOURS",
    "ATEDA_ORPHAN_GRACE_HOURS",
    "ATEDA_MAINTENANCE_BUDGET_S",
}
REQUIRED_ENV = {
    "ateda-minio-bridge": {"ATEDA_BUCKET", "ATEDA_BRIDGE_TOKEN", "ATEDA_BATCH_WINDOW_MS", "ATEDA_BATCH_MAX_OBJECTS"},
    "ateda-split": {"ATEDA_BUCKET", "ATEDA_LAKE", "ATEDA_S3_ENDPOINT", "ATEDA_CHUNK_ALERTS"},
    "ateda-bronze": {
        "ATEDA_LAKE",
        "ATEDA_WAREHOUSE",
        "ATEDA_CATALOG_URI",
        "ATEDA_S3_ENDPOINT",
        "ATEDA_COMMIT_WINDOW_MS",
        "ATEDA_COMMIT_MAX_ALERTS",
    },
    "ateda-dead-letter": {"ATEDA_LAKE", "ATEDA_S3_ENDPOINT"},
    "ateda-dbt-refresh": {"ATEDA_LAKE", "ATEDA_WAREHOUSE", "ATEDA_CATALOG_URI", "ATEDA_S3_ENDPOINT", "ATEDA_DBT_TARGET",
                          "ATEDA_ICEBERG_CATALOG", "ATEDA_STARROCKS_HOST", "ATEDA_STARROCKS_PASSWORD"},
    "ateda-crossmatch": {"ATEDA_LAKE", "ATEDA_WAREHOUSE", "ATEDA_CATALOG_URI", "ATEDA_S3_ENDPOINT"},
    "ateda-maintenance": {"ATEDA_LAKE", "ATEDA_WAREHOUSE", "ATEDA_CATALOG_URI", "ATEDA_S3_ENDPOINT",
                          "ATEDA_MAINTENANCE_BUDGET_S"},
}
S3_ENV = {"AWS_REGION", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}

AUTOSCALING_KEYS = {
    "class",
    "metric",
    "target",
    "target-utilization-percentage",
    "min-scale",
    "max-scale",
    "initial-scale",
    "activation-scale",
    "window",
    "panic-window-percentage",
    "panic-threshold-percentage",
    "scale-down-delay",
    "scale-to-zero-pod-retention-period",
    "target-burst-capacity",
}
FILTER_DIALECTS = {"exact", "prefix", "suffix", "all", "any", "not", "cesql"}
ISO8601_DURATION = re.compile(
    r"^P(?!$)(?:\d+(?:\.\d+)?Y)?(?:\d+(?:\.\d+)?M)?(?:\d+(?:\.\d+)?W)?(?:\d+(?:\.\d+)?D)?"
    r"(?:T(?=\d)(?:\d+(?:\.\d+)?H)?(?:\d+(?:\.\d+)?M)?(?:\d+(?:\.\d+)?S)?)?$"
)


# --------------------------------------------------------------------------------------------
# Loading


def manifest_files() -> list[Path]:
    return sorted(KNATIVE_DIR.glob("*.yaml"))


@functools.lru_cache(maxsize=None)
def _load_all() -> tuple[tuple[str, int, Any], ...]:
    out = []
    for path in manifest_files():
        for i, doc in enumerate(yaml.safe_load_all(path.read_text())):
            out.append((path.name, i, doc))
    return tuple(out)


def documents() -> list[dict]:
    return [copy.deepcopy(doc) for _, _, doc in _load_all() if doc is not None]


def doc_id(doc: dict) -> str:
    return f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}"


def of_kind(kind: str, api_version: str | None = None) -> list[dict]:
    return [
        d for d in documents() if d.get("kind") == kind and (api_version is None or d.get("apiVersion") == api_version)
    ]


def knative_services() -> dict[str, dict]:
    return {d["metadata"]["name"]: d for d in of_kind("Service", "serving.knative.dev/v1")}


def triggers() -> dict[str, dict]:
    return {d["metadata"]["name"]: d for d in of_kind("Trigger", "eventing.knative.dev/v1")}


def group_of(api_version: str) -> str:
    return api_version.rsplit("/", 1)[0] if "/" in api_version else ""


def is_core(doc: dict) -> bool:
    """Built-in Kubernetes kinds: core group or a group without a dot, or *.k8s.io groups."""
    group = group_of(doc["apiVersion"])
    return group == "" or "." not in group or group.endswith(".k8s.io")


def container(svc: dict) -> dict:
    containers = svc["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1, f"{doc_id(svc)}: expected one container, got {len(containers)}"
    return containers[0]


def env_of(svc: dict) -> dict[str, dict]:
    env = container(svc).get("env", [])
    names = [e["name"] for e in env]
    dupes = {n for n in names if names.count(n) > 1}
    assert not dupes, f"{doc_id(svc)}: env vars set twice: {sorted(dupes)}"
    return {e["name"]: e for e in env}


def env_value(svc: dict, name: str) -> str:
    return env_of(svc)[name]["value"]


def annotations(svc: dict) -> dict[str, str]:
    return svc["spec"]["template"].get("metadata", {}).get("annotations", {}) or {}


# --------------------------------------------------------------------------------------------
# Schemas


def _crd_files() -> list[Path]:
    return sorted(CRD_DIR.rglob("*.yaml")) + sorted(CRD_DIR.rglob("*.yml"))


@functools.lru_cache(maxsize=None)
def crd_schemas() -> dict[tuple[str, str, str], dict]:
    """(group, version, kind) -> openAPIV3Schema of every served version of every CRD."""
    assert CRD_DIR.is_dir(), f"CRD folder missing: {CRD_DIR} (shared/ must sit beside the repo)"
    out: dict[tuple[str, str, str], dict] = {}
    for path in _crd_files():
        for crd in yaml.safe_load_all(path.read_text()):
            if not crd or crd.get("kind") != "CustomResourceDefinition":
                continue
            spec = crd["spec"]
            for version in spec["versions"]:
                if not version.get("served"):
                    continue
                schema = (version.get("schema") or {}).get("openAPIV3Schema") or spec.get("validation", {}).get(
                    "openAPIV3Schema"
                )
                if schema:
                    out[(spec["group"], version["name"], spec["names"]["kind"])] = schema
    assert out, f"no CRD schema found under {CRD_DIR}"
    return out


METADATA_SCHEMA = {
    "type": "object",
    "required": ["name"],
    "additionalProperties": False,
    "properties": {
        "name": {"type": "string", "pattern": r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", "maxLength": 63},
        "namespace": {"type": "string"},
        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
        "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
    },
}


def strict(schema: Any) -> Any:
    """Close every object schema that lists properties and does not preserve unknown fields."""
    if isinstance(schema, dict):
        out = {k: strict(v) for k, v in schema.items()}
        if (
            "properties" in out
            and not out.get("x-kubernetes-preserve-unknown-fields")
            and "additionalProperties" not in out
        ):
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [strict(v) for v in schema]
    return schema


@functools.lru_cache(maxsize=None)
def crd_validator(group: str, version: str, kind: str) -> jsonschema.Draft7Validator:
    schema = crd_schemas().get((group, version, kind))
    assert schema is not None, f"no served CRD version for {group}/{version} {kind} in {CRD_DIR}"
    schema = strict(copy.deepcopy(schema))
    props = schema.setdefault("properties", {})
    props["apiVersion"] = {"const": f"{group}/{version}"}
    props["kind"] = {"const": kind}
    props["metadata"] = METADATA_SCHEMA  # the CRDs leave it as a bare object
    schema["required"] = sorted(set(schema.get("required", [])) | {"apiVersion", "kind", "metadata"})
    schema["additionalProperties"] = False
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


def crd_errors(doc: dict) -> list[str]:
    group, version = doc["apiVersion"].split("/", 1)
    validator = crd_validator(group, version, doc["kind"])
    return [f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}" for e in validator.iter_errors(doc)]


def core_errors(doc: dict) -> list[str]:
    import kubernetes_validate  # test extra: kubernetes-validate==1.37.0

    try:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        return [f"{'/'.join(map(str, exc.path)) or '<root>'}: {exc.message}"]
    return []


def env_name_problems(name: str) -> list[str]:
    problems = []
    if not name.startswith(ENV_PREFIXES):
        problems.append(f"{name}: prefix not one of {ENV_PREFIXES}")
    if name in RESERVED_ENV:
        problems.append(f"{name}: reserved, set by Knative or the SinkBinding")
    elif name not in ENV_NAMES:
        problems.append(f"{name}: not a name the code reads")
    return problems


# --------------------------------------------------------------------------------------------
# (a) parsing and schema validation


def test_manifest_files_are_numbered_for_apply_order():
    names = [p.name for p in manifest_files()]
    assert names, f"no manifests in {KNATIVE_DIR}"
    bad = [n for n in names if not re.match(r"^\d{2}-[a-z0-9-]+\.yaml$", n)]
    assert not bad, f"manifests must be named NN-name.yaml: {bad}"
    # the namespace first, the things that reference Services after them
    order = {n: i for i, n in enumerate(names)}
    first_of = {}
    for name, _, doc in _load_all():
        if doc:
            first_of.setdefault(doc["kind"], order[name])
    assert first_of["Namespace"] == 0
    assert first_of["Trigger"] > first_of["Service"] and first_of["SinkBinding"] > first_of["Service"]


def test_every_document_parses_and_is_a_kubernetes_object():
    loaded = _load_all()
    empty = [f"{f}#{i}" for f, i, d in loaded if d is None]
    assert not empty, f"empty YAML documents (stray '---'?): {empty}"
    seen = set()
    for fname, i, doc in loaded:
        where = f"{fname}#{i}"
        assert isinstance(doc, dict), f"{where}: not a mapping"
        for key in ("apiVersion", "kind", "metadata"):
            assert key in doc, f"{where}: missing {key}"
        assert doc["metadata"].get("name"), f"{where}: no metadata.name"
        key = (doc["apiVersion"], doc["kind"], doc["metadata"].get("namespace"), doc["metadata"]["name"])
        assert key not in seen, f"{where}: duplicate object {key}"
        seen.add(key)


def test_every_namespaced_object_lives_in_the_ateda_namespace():
    namespaces = [d["metadata"]["name"] for d in of_kind("Namespace", "v1")]
    assert namespaces == [NAMESPACE]
    for doc in documents():
        if doc["kind"] != "Namespace":
            assert doc["metadata"].get("namespace") == NAMESPACE, f"{doc_id(doc)}: namespace must be {NAMESPACE}"


def test_no_secret_values_in_the_repo():
    secrets = [doc_id(d) for d in documents() if d["kind"] == "Secret"]
    assert not secrets, f"Secrets are created by hand (see knative/README.md), not committed: {secrets}"


@pytest.mark.parametrize("doc", [d for d in documents() if not is_core(d)], ids=doc_id)
def test_knative_kinds_validate_against_crd_schema(doc):
    errors = crd_errors(doc)
    assert not errors, f"{doc_id(doc)} does not match its CRD schema:\n" + "\n".join(errors)


@pytest.mark.parametrize("doc", [d for d in documents() if is_core(d)], ids=doc_id)
def test_core_kinds_validate_with_kubernetes_validate(doc):
    errors = core_errors(doc)
    assert not errors, f"{doc_id(doc)} is not a valid Kubernetes {K8S_VERSION} object:\n" + "\n".join(errors)


def test_validators_reject_broken_documents():
    """The schema checks above can fail: typos and wrong types are caught."""
    trigger = copy.deepcopy(triggers()["split-on-object-created"])
    trigger["spec"]["delivery"]["retry"] = "five"
    assert any("retry" in e for e in crd_errors(trigger))

    svc = copy.deepcopy(knative_services()["ateda-split"])
    container(svc)["imagee"] = container(svc).pop("image")
    assert any("imagee" in e for e in crd_errors(svc))

    svc = copy.deepcopy(knative_services()["ateda-bronze"])
    svc["spec"]["template"]["metadata"]["annotations"]["autoscaling.knative.dev/max-scale"] = 1
    assert crd_errors(svc)

    binding = copy.deepcopy(of_kind("SinkBinding")[0])
    binding["metadata"]["nmae"] = binding["metadata"].pop("name")
    assert crd_errors(binding)

    namespace = copy.deepcopy(of_kind("Namespace", "v1")[0])
    namespace["spec"] = {"finalizer": ["kubernetes"]}
    assert core_errors(namespace)


# --------------------------------------------------------------------------------------------
# (b) Triggers: event types from the catalog, explicit delivery


@functools.lru_cache(maxsize=None)
def catalog_types() -> frozenset[str]:
    assert EVENT_CATALOG.is_file(), f"event catalog missing: {EVENT_CATALOG}"
    catalog = yaml.safe_load(EVENT_CATALOG.read_text())
    assert isinstance(catalog, dict) and isinstance(catalog.get("events"), list), "catalog needs an `events:` list"
    types = [e["type"] for e in catalog["events"]]
    assert all(isinstance(t, str) and t for t in types)
    return frozenset(types)


def filter_type_constraints(expr: dict) -> Iterator[tuple[str, str]]:
    """(dialect, value) of every constraint on the `type` attribute in one filter expression."""
    assert isinstance(expr, dict) and len(expr) == 1, f"a filter expression has exactly one dialect: {expr}"
    (dialect, body), = expr.items()
    assert dialect in FILTER_DIALECTS, f"unknown filter dialect {dialect!r}"
    if dialect in ("exact", "prefix", "suffix"):
        assert isinstance(body, dict) and body, f"{dialect}: needs attribute: value pairs"
        for attr, value in body.items():
            assert re.fullmatch(r"[a-z0-9]+", attr), f"CloudEvents attribute names are [a-z0-9]+: {attr!r}"
            assert isinstance(value, str) and value, f"{dialect}.{attr}: value must be a non-empty string"
            if attr == "type":
                yield dialect, value
    elif dialect in ("all", "any"):
        assert isinstance(body, list) and body, f"{dialect}: needs at least one nested expression"
        for sub in body:
            yield from filter_type_constraints(sub)
    elif dialect == "not":
        yield from filter_type_constraints(body)


def matching_types(dialect: str, value: str, types: frozenset[str]) -> set[str]:
    if dialect == "exact":
        return {t for t in types if t == value}
    if dialect == "prefix":
        return {t for t in types if t.startswith(value)}
    return {t for t in types if t.endswith(value)}


def test_event_catalog_lists_the_pipeline_event_types():
    missing = EVENT_TYPES - catalog_types()
    assert not missing, f"{EVENT_CATALOG} lacks {sorted(missing)}"


def test_expected_triggers_exist_with_their_subscribers():
    found = triggers()
    assert set(found) == set(TRIGGERS), f"Triggers: expected {sorted(TRIGGERS)}, got {sorted(found)}"
    services = knative_services()
    for name, (subscriber, event_type) in TRIGGERS.items():
        spec = found[name]["spec"]
        assert spec["broker"] == BROKER
        ref = spec["subscriber"]["ref"]
        assert (ref["apiVersion"], ref["kind"], ref["name"]) == ("serving.knative.dev/v1", "Service", subscriber)
        assert ref.get("namespace", NAMESPACE) == NAMESPACE
        assert subscriber in services, f"{name}: subscriber {subscriber} is not defined in knative/"
        # The Broker delivers CloudEvents: the subscriber must be a cloudevent function.
        assert env_value(services[subscriber], "FUNCTION_SIGNATURE_TYPE") == "cloudevent"
        exact = [v for d, v in filter_type_constraints_all(spec) if d == "exact"]
        assert exact == [event_type], f"{name}: expected exact type filter {event_type}, got {exact}"


def filter_type_constraints_all(spec: dict) -> list[tuple[str, str]]:
    out = []
    for expr in spec["filters"]:
        out.extend(filter_type_constraints(expr))
    return out


@pytest.mark.parametrize("name", sorted(TRIGGERS))
def test_trigger_filters_on_catalogued_event_types(name):
    spec = triggers()[name]["spec"]
    assert "filter" not in spec, f"{name}: use the new-style `filters:` only (`filter` is ignored when both are set)"
    assert isinstance(spec.get("filters"), list) and spec["filters"], f"{name}: no `filters:`"
    constraints = filter_type_constraints_all(spec)
    assert constraints, f"{name}: filters do not constrain the event `type`"
    types = catalog_types()
    for dialect, value in constraints:
        assert matching_types(dialect, value, types), f"{name}: {dialect} type {value!r} matches no catalogued type"


def check_delivery(where: str, delivery: dict | None) -> None:
    assert isinstance(delivery, dict), f"{where}: no delivery spec"
    retry = delivery.get("retry")
    assert isinstance(retry, int) and 1 <= retry <= 20, f"{where}: delivery.retry must be 1..20, got {retry!r}"
    assert delivery.get("backoffPolicy") in ("exponential", "linear"), f"{where}: backoffPolicy"
    delay = delivery.get("backoffDelay")
    assert isinstance(delay, str) and ISO8601_DURATION.match(delay), f"{where}: backoffDelay {delay!r} not ISO-8601"
    ref = (delivery.get("deadLetterSink") or {}).get("ref") or {}
    assert (ref.get("apiVersion"), ref.get("kind"), ref.get("name")) == (
        "serving.knative.dev/v1",
        "Service",
        DEAD_LETTER,
    ), f"{where}: deadLetterSink must ref Service {DEAD_LETTER}, got {ref}"
    assert ref.get("namespace", NAMESPACE) == NAMESPACE


@pytest.mark.parametrize("name", sorted(TRIGGERS))
def test_trigger_has_explicit_delivery_with_dead_letter_sink(name):
    check_delivery(f"Trigger/{name}", triggers()[name]["spec"].get("delivery"))


def test_broker_has_delivery_and_dead_letter_sink():
    brokers = of_kind("Broker", "eventing.knative.dev/v1")
    assert [b["metadata"]["name"] for b in brokers] == [BROKER]
    broker = brokers[0]
    assert broker["metadata"].get("annotations", {}).get("eventing.knative.dev/broker.class")
    check_delivery(f"Broker/{BROKER}", broker["spec"].get("delivery"))
    assert DEAD_LETTER in knative_services()


def test_delivery_check_rejects_missing_fields():
    delivery = copy.deepcopy(triggers()["bronze-on-alerts-staged"]["spec"]["delivery"])
    for key in ("retry", "backoffPolicy", "backoffDelay", "deadLetterSink"):
        broken = {k: v for k, v in delivery.items() if k != key}
        with pytest.raises(AssertionError):
            check_delivery("broken", broken)
    with pytest.raises(AssertionError):
        check_delivery("broken", {**delivery, "backoffDelay": "0.5s"})
    # a misspelt type matches nothing in the catalog; a prefix filter matches the family
    assert not matching_types("exact", "dev.ateda.objects.created", catalog_types())
    assert matching_types("prefix", "dev.ateda.", catalog_types()) == {t for t in EVENT_TYPES if t.startswith("dev.ateda.")}


# --------------------------------------------------------------------------------------------
# (c) Services: images, ports, timeouts, resources, scaling


def test_expected_services_exist():
    assert set(knative_services()) == set(SERVICES) | set(APPS)


def test_the_explorer_service():
    """The explorer (docs/explorer.md): `ateda serve` on port 8080, always up, its token from a Secret (it listens
    beyond loopback), the lake and StarRocks settings, pinned image, bounded resources, no Trigger."""
    svc = knative_services()["ateda-explorer"]
    c = container(svc)
    assert c["image"] == f"kind.local/ateda-explorer:{IMAGE_TAG}"
    assert c["command"][:2] == ["ateda", "serve"] and "--host" in c["command"]
    assert [p["containerPort"] for p in c.get("ports", [])] == [8080] and "8080" in c["command"]
    assert scale(svc, "min-scale") >= 1 and scale(svc, "min-scale") <= scale(svc, "max-scale")
    env = env_of(svc)
    assert APPS["ateda-explorer"] <= set(env), sorted(APPS["ateda-explorer"] - set(env))
    problems = [p for name in env for p in env_name_problems(name)]
    assert not problems, problems
    for name, entry in env.items():
        if name in SECRET_ENV:
            ref = entry.get("valueFrom", {}).get("secretKeyRef", {})
            assert "value" not in entry and (ref.get("name"), ref.get("key")) == SECRET_ENV[name], name
        elif name in FIXED_ENV:
            assert entry["value"] == FIXED_ENV[name], name
    resources = c.get("resources", {})
    for resource in ("cpu", "memory"):
        assert quantity(resources["requests"][resource]) <= quantity(resources["limits"][resource])
    assert "ateda-explorer" not in {t["spec"]["subscriber"]["ref"]["name"] for t in triggers().values()}
    assert svc["metadata"].get("labels", {}).get(EMITS_LABEL) != "true"
    # the cluster's warehouse, StarRocks, as the read-only user the starrocks-catalog Job creates (SELECT only)
    assert env["ATEDA_EXPLORER_BACKEND"]["value"] == "starrocks"
    assert env["ATEDA_STARROCKS_USER"]["value"] == "superset" and env["ATEDA_STARROCKS_PORT"]["value"] == "9030"
    assert env["ATEDA_STARROCKS_HOST"]["value"].startswith("starrocks-fe-service.starrocks.")


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_service_image_is_local_and_pinned(name):
    image = container(knative_services()[name])["image"]
    assert image.startswith("kind.local/"), f"{name}: image {image} must be kind.local/... on Kind"
    repo, _, tag = image.rpartition(":")
    assert repo and "/" not in tag, f"{name}: image {image} has no tag"
    assert tag != "latest", f"{name}: image {image} uses :latest"
    assert image == f"kind.local/{name}:{IMAGE_TAG}", f"{name}: expected kind.local/{name}:{IMAGE_TAG}, got {image}"


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_service_runs_the_function_framework_contract(name):
    svc = knative_services()[name]
    _, signature, _ = SERVICES[name]
    spec = svc["spec"]["template"]["spec"]
    ports = container(svc).get("ports", [])
    assert [p["containerPort"] for p in ports] == [8080], f"{name}: must expose exactly port 8080"
    assert spec.get("timeoutSeconds") == 300, f"{name}: timeoutSeconds must be 300"
    assert env_value(svc, "FUNCTION_TARGET") == "handle"
    assert env_value(svc, "FUNCTION_SIGNATURE_TYPE") == signature


def quantity(value: str | int) -> float:
    units = {"m": 1e-3, "": 1, "k": 1e3, "M": 1e6, "G": 1e9, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([a-zA-Z]*)", str(value))
    assert match and match.group(2) in units, f"unsupported quantity {value!r}"
    return float(match.group(1)) * units[match.group(2)]


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_service_has_resource_requests_and_limits(name):
    resources = container(knative_services()[name]).get("resources", {})
    for resource in ("cpu", "memory"):
        request = resources.get("requests", {}).get(resource)
        limit = resources.get("limits", {}).get(resource)
        assert request is not None and limit is not None, f"{name}: needs {resource} request and limit"
        assert quantity(request) <= quantity(limit), f"{name}: {resource} request {request} > limit {limit}"


def scale(svc: dict, key: str) -> int:
    return int(annotations(svc)[f"autoscaling.knative.dev/{key}"])


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_service_autoscaling_annotations_are_known_and_consistent(name):
    svc = knative_services()[name]
    notes = annotations(svc)
    keys = {k.split("/", 1)[1] for k in notes if k.startswith("autoscaling.knative.dev/")}
    assert {"min-scale", "max-scale"} <= keys, f"{name}: set min-scale and max-scale"
    assert keys <= AUTOSCALING_KEYS, f"{name}: unknown autoscaling annotations {sorted(keys - AUTOSCALING_KEYS)}"
    assert 0 <= scale(svc, "min-scale") <= scale(svc, "max-scale"), f"{name}: min-scale > max-scale"
    # Knative's hard per-pod limit must not exceed what gunicorn serves at once.
    cc = svc["spec"]["template"]["spec"].get("containerConcurrency", 0)
    served = int(env_value(svc, "WORKERS")) * int(env_value(svc, "THREADS"))
    assert cc > 0 and served >= cc, f"{name}: containerConcurrency {cc} vs WORKERS*THREADS {served}"


def test_scaling_profiles():
    services = knative_services()
    split, bronze, bridge = services["ateda-split"], services["ateda-bronze"], services["ateda-minio-bridge"]
    # split: stateless, scales out wide and to zero
    assert scale(split, "min-scale") == 0 and scale(split, "max-scale") >= 10
    assert scale(split, "target") <= 8
    # bronze: one pod, one process, many threads: concurrent requests share one group commit
    assert scale(bronze, "min-scale") == 1 and scale(bronze, "max-scale") == 1
    assert int(env_value(bronze, "WORKERS")) == 1
    assert bronze["spec"]["template"]["spec"]["containerConcurrency"] >= 16
    # bridge: MinIO needs it up
    assert scale(bridge, "min-scale") >= 1
    assert scale(services[DEAD_LETTER], "max-scale") <= 3
    # maintenance: exactly one pass at a time, and a pod that stays up so its lake gauges can be scraped
    maint = services["ateda-maintenance"]
    assert scale(maint, "min-scale") == 1 and scale(maint, "max-scale") == 1
    assert maint["spec"]["template"]["spec"]["containerConcurrency"] == 1
    budget = int(env_value(maint, "ATEDA_MAINTENANCE_BUDGET_S"))
    assert budget + 30 <= maint["spec"]["template"]["spec"]["timeoutSeconds"], "a pass must answer inside the timeout"


def test_pingsource_ticks_the_maintenance_through_the_broker():
    from ateda.steps.maintenance import tasks_of

    sources = of_kind("PingSource", "sources.knative.dev/v1")
    assert len(sources) == 1
    spec = sources[0]["spec"]
    sink = spec["sink"]["ref"]
    assert (sink["apiVersion"], sink["kind"], sink["name"]) == ("eventing.knative.dev/v1", "Broker", BROKER)
    fields = spec["schedule"].split()
    assert len(fields) == 5 and fields[0].isdigit() and fields[1:] == ["*", "*", "*", "*"], "hourly"
    assert spec["contentType"] == "application/json"
    data = json.loads(spec["data"])
    assert tasks_of(data) == ["compact", "expire", "orphans", "stats", "reconcile"]
    jsonschema.Draft202012Validator(json.loads(
        (ROOT / "events" / "schemas" / "dev.knative.sources.ping.json").read_text())).validate(data)
    # its events reach the maintenance Service through a Trigger on the PingSource's type
    subscribers = {t["spec"]["subscriber"]["ref"]["name"] for t in triggers().values()
                   if {"exact": {"type": "dev.knative.sources.ping"}} in t["spec"].get("filters", [])}
    assert subscribers == {"ateda-maintenance"}


# --------------------------------------------------------------------------------------------
# (d) environment variables


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_service_env_names_are_the_ones_the_code_reads(name):
    problems = [p for env_name in env_of(knative_services()[name]) for p in env_name_problems(env_name)]
    assert not problems, f"{name}:\n" + "\n".join(problems)


def test_env_name_check_rejects_bad_names():
    assert env_name_problems("ATEDA_BUKET")
    assert env_name_problems("BUCKET")
    assert env_name_problems("PORT")
    assert env_name_problems("K_SINK")
    assert not env_name_problems("ATEDA_BUCKET")


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_service_env_values(name):
    svc = knative_services()[name]
    env = env_of(svc)
    missing = REQUIRED_ENV[name] - set(env)
    assert not missing, f"{name}: missing env {sorted(missing)}"
    if "ATEDA_S3_ENDPOINT" in env:
        assert S3_ENV <= set(env), f"{name}: S3 endpoint without {sorted(S3_ENV - set(env))}"
    if "ATEDA_BRIDGE_TOKEN" in env:
        assert name == "ateda-minio-bridge", f"{name}: only the bridge gets the bridge token"
    for env_name, entry in env.items():
        if env_name in SECRET_ENV:
            assert "value" not in entry, f"{name}: {env_name} must come from a Secret, not a literal"
            ref = entry.get("valueFrom", {}).get("secretKeyRef", {})
            want = SECRET_ENV_OF.get((name, env_name), SECRET_ENV[env_name])
            assert (ref.get("name"), ref.get("key")) == want, f"{name}: {env_name} secretKeyRef {ref}"
            continue
        assert isinstance(entry.get("value"), str), f"{name}: {env_name} needs a literal string value"
        value = entry["value"]
        if env_name in FIXED_ENV:
            assert value == FIXED_ENV[env_name], f"{name}: {env_name}={value!r}, expected {FIXED_ENV[env_name]!r}"
        if env_name in INT_ENV:
            assert value.isdigit() and int(value) > 0, f"{name}: {env_name}={value!r} must be a positive integer"
        if env_name in ("ATEDA_LAKE", "ATEDA_WAREHOUSE"):
            assert value.startswith("s3://"), f"{name}: {env_name}={value!r} must be an s3:// URI"
    if "ATEDA_WAREHOUSE" in env and "ATEDA_LAKE" in env:
        assert env_value(svc, "ATEDA_WAREHOUSE").startswith(env_value(svc, "ATEDA_LAKE").rstrip("/") + "/")


def test_env_names_are_read_by_the_code():
    """Every ATEDA_* name a Service sets appears in the project's Python source (catches typos the code ignores)."""
    sources = [p for d in ("shared", "functions") for p in (ROOT / d).rglob("*.py")]
    if not sources:
        pytest.skip("no Python source yet")
    text = "\n".join(p.read_text(errors="replace") for p in sources)
    used = {n for svc in knative_services().values() for n in env_of(svc) if n.startswith("ATEDA_")}
    unread = sorted(n for n in used if f'"{n}"' not in text and f"'{n}'" not in text)
    assert not unread, f"env vars set in knative/ but never read by the code: {unread}"


# --------------------------------------------------------------------------------------------
# SinkBinding: K_SINK goes to exactly the Services that emit events


def test_sinkbinding_points_emitting_services_at_the_broker():
    bindings = of_kind("SinkBinding", "sources.knative.dev/v1")
    assert len(bindings) == 1
    spec = bindings[0]["spec"]
    subject = spec["subject"]
    assert (subject["apiVersion"], subject["kind"]) == ("serving.knative.dev/v1", "Service")
    assert "name" not in subject, "select by label, not by name"
    selector = subject["selector"]["matchLabels"]
    assert selector == {EMITS_LABEL: "true"}
    sink = spec["sink"]["ref"]
    assert (sink["apiVersion"], sink["kind"], sink["name"]) == ("eventing.knative.dev/v1", "Broker", BROKER)
    selected = {
        name
        for name, svc in knative_services().items()
        if all(svc["metadata"].get("labels", {}).get(k) == v for k, v in selector.items())
    }
    expected = {name for name, (_, _, emits) in SERVICES.items() if emits}
    assert selected == expected, f"SinkBinding selects {sorted(selected)}, expected {sorted(expected)}"


# --------------------------------------------------------------------------------------------
# (e) Kind


def test_kind_cluster_maps_kourier_nodeport_to_host_port_80():
    config = yaml.safe_load(KIND_CONFIG.read_text())
    assert config["apiVersion"] == "kind.x-k8s.io/v1alpha4" and config["kind"] == "Cluster"
    mappings = [m for node in config.get("nodes", []) for m in node.get("extraPortMappings", [])]
    kourier = [m for m in mappings if m.get("containerPort") == 31080]
    assert len(kourier) == 1 and kourier[0].get("hostPort") == 80, f"need containerPort 31080 -> hostPort 80: {kourier}"
    assert kourier[0].get("protocol", "TCP") == "TCP"
    host_ports = [(m.get("listenAddress", "0.0.0.0"), m["hostPort"]) for m in mappings]
    assert len(host_ports) == len(set(host_ports)), "a host port is mapped twice"
    for m in mappings:
        assert 30000 <= m["containerPort"] <= 32767, f"containerPort {m['containerPort']} is not a NodePort"
    assert sum(n.get("role") == "control-plane" for n in config["nodes"]) >= 1
