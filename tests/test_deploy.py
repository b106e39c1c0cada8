"""Offline checks of the deployment: helmfile.yaml, its values, the local charts and the wiring between releases.

Nothing here talks to a cluster, a registry or a chart repository. The templates are rendered by the real tools
(installed by scripts/tools.sh into .tools/bin): `helmfile write-values` renders every release's values files
(deploy/values/*.gotmpl over the environment values of deploy/env/) for both environments, `helm lint --strict` and
`helm template` render every local chart (deploy/charts/*) with them (helm 3, and helm 4 must agree), and `helmfile -e <env> template` renders every
release whose chart is local. The remote charts (kube-prometheus-stack, knative-operator, cloudnative-pg, nessie,
starrocks) cannot be fetched here: their rendered values are checked against the keys their pinned chart versions
document (the cross-release tests below), not rendered by helm. Every rendered object is validated: core kinds with
kubernetes-validate, Knative kinds against the CRD schemas in ../shared/k8s/crds (strict: an unknown field fails),
the operators' ServiceMonitor/PodMonitor/KnativeServing/KnativeEventing with the kubernetes-models schemas.
What helm cannot know stays here: pinned versions, no secret literals, every Secret referenced is created by
secrets.sh, and the wiring between releases (endpoints, buckets, ports, tokens, the StarRocks catalog properties).

Without the tools the tests fail (run scripts/tools.sh); ATEDA_ALLOW_NO_TOOLS=1 turns that into a skip for a machine
that cannot install them. The dashboards' JSON and PromQL are checked in tests/test_dashboards.py.
"""

from __future__ import annotations

import copy
import functools
import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any, Iterator

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
HELMFILE = ROOT / "helmfile.yaml"
DEPLOY = ROOT / "deploy"
CHARTS = DEPLOY / "charts"
DASHBOARDS = DEPLOY / "dashboards"
DOCKERFILE = ROOT / "docker" / "Dockerfile"
KNATIVE_DIR = ROOT / "knative"
KIND_CONFIG = ROOT / "kind" / "cluster.yaml"
SECRETS_SCRIPT = DEPLOY / "scripts" / "secrets.sh"
CRD_DIR = ROOT.parent / "shared" / "k8s" / "crds"
TOOLS_BIN = ROOT / ".tools" / "bin"
K8S_VERSION = "1.33"
TOOL_TIMEOUT = 120  # seconds for one helm/helmfile run (they take about one)

ENVIRONMENTS = ("kind", "prod")
# What a person deploying to prod exports (deploy/env/prod.yaml.gotmpl uses requiredEnv for these).
PROD_ENV = {"ATEDA_IMAGE_REGISTRY": "registry.example.org/ateda", "ATEDA_DOMAIN": "kn.example.org"}

# CRD API group -> the release ("namespace/name") that installs the CRD.
CRD_PROVIDERS = {
    "monitoring.coreos.com": "monitoring/kube-prometheus-stack",
    "operator.knative.dev": "knative-operator/knative-operator",
    "serving.knative.dev": "knative-serving/knative",
    "eventing.knative.dev": "knative-serving/knative",
    "sources.knative.dev": "knative-serving/knative",
    "postgresql.cnpg.io": "cnpg-system/cnpg",
    "starrocks.com": "starrocks/starrocks-operator",
}
# Custom resources the remote charts create with the values we give them (their templates are not in this repo).
REMOTE_CHART_CR_GROUPS = {
    "ateda/nessie": {"monitoring.coreos.com"},  # serviceMonitor.enabled
    "starrocks/starrocks": {"starrocks.com", "monitoring.coreos.com"},  # StarRocksCluster, metrics.serviceMonitor
}

# ================================================================================================================
# The real tools: helm and helmfile from .tools/bin (scripts/tools.sh) or PATH


def tool(name: str) -> str:
    """The path of a tool; a missing tool fails the test (skips it only with ATEDA_ALLOW_NO_TOOLS=1)."""
    local = TOOLS_BIN / name
    path = str(local) if os.access(local, os.X_OK) else shutil.which(name)
    return path or missing(name)


def missing(what: str) -> str:
    message = f"{what} is not installed: run scripts/tools.sh (it installs into .tools)"
    if os.environ.get("ATEDA_ALLOW_NO_TOOLS") == "1":
        pytest.skip(message)
    pytest.fail(message)


@functools.lru_cache(maxsize=None)
def _workdir() -> tempfile.TemporaryDirectory:
    return tempfile.TemporaryDirectory(prefix="ateda-deploy-test-")


def tool_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """A clean environment: helm's caches and repositories in a scratch folder, no kube context, helmfile v1 mode."""
    work = Path(_workdir().name)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ATEDA_", "HELM", "KUBE"))}
    env.update(HELM_CACHE_HOME=str(work / "helm-cache"), HELM_CONFIG_HOME=str(work / "helm-config"),
               HELM_DATA_HOME=str(work / "helm-data"), KUBECONFIG=str(work / "no-kubeconfig"),
               HELMFILE_V1MODE="true")  # helmfile 0.166 reads helmfile.yaml as helmfile 1.x does
    env.update(extra or {})
    return env


def run_tool(name: str, *args: str, env: dict[str, str] | None = None, cwd: Path = ROOT,
             check: bool = True) -> subprocess.CompletedProcess:
    if name == "helmfile":
        args = ("--helm-binary", tool("helm"), *args)
    proc = subprocess.run([tool(name), *args], cwd=cwd, env=tool_env(env), capture_output=True, text=True,
                          timeout=TOOL_TIMEOUT)
    if check and proc.returncode != 0:
        raise AssertionError(f"`{name} {' '.join(args)}` failed ({proc.returncode}):\n{proc.stderr}{proc.stdout}")
    return proc


def _yaml_docs(text: str) -> list[Any]:
    return [d for d in yaml.safe_load_all(text) if d is not None]


# ================================================================================================================
# Loading helmfile.yaml (as written, for the checks on its form), environments, values, charts


@functools.lru_cache(maxsize=None)
def helmfile_parts() -> tuple[dict, ...]:
    return tuple(_yaml_docs(HELMFILE.read_text()))


def helmfile() -> dict:
    merged: dict = {}
    for part in helmfile_parts():
        for key, value in part.items():
            if isinstance(value, list) and isinstance(merged.get(key), list):
                merged[key] = merged[key] + value
            else:
                merged[key] = value
    return merged


def releases() -> list[dict]:
    return helmfile()["releases"]


def release_id(rel: dict) -> str:
    return f"{rel['namespace']}/{rel['name']}"


def release(rid: str) -> dict:
    return next(r for r in releases() if release_id(r) == rid)


def is_local(rel: dict) -> bool:
    return rel["chart"].startswith("./")


def local_releases() -> list[dict]:
    return [r for r in releases() if is_local(r)]


ENV_READ = re.compile(r'\b(?:requiredEnv|env)\s+"(\w+)"')


def env_vars_read() -> set[str]:
    """Every process variable the helmfile templates read (env / requiredEnv)."""
    return {m for p in DEPLOY.rglob("*.gotmpl") for m in ENV_READ.findall(p.read_text())}


def helmfile_env(env_name: str, markers: bool = False) -> dict[str, str]:
    """What the person running helmfile exports. markers=True: every variable read is set to <env:NAME>, so a
    value that reaches the releases from the environment is recognisable (never a literal in the repository)."""
    if markers:
        return {name: f"<env:{name}>" for name in env_vars_read()}
    return dict(PROD_ENV) if env_name == "prod" else {}


@functools.lru_cache(maxsize=None)
def written_values(env_name: str, markers: bool = False) -> dict[str, dict]:
    """`helmfile -e <env> write-values`: release id -> the merged values helmfile passes to helm (remote charts too:
    writing values needs no chart)."""
    out = Path(_workdir().name) / f"values-{env_name}-{int(markers)}"
    run_tool("helmfile", "-e", env_name, "write-values", "--skip-deps", "--output-file-template",
             f"{out}/{{{{ .Release.Namespace }}}}/{{{{ .Release.Name }}}}.yaml", env=helmfile_env(env_name, markers))
    return {f"{p.parent.name}/{p.stem}": yaml.safe_load(p.read_text()) or {} for p in sorted(out.glob("*/*.yaml"))}


def values_file(rid: str, env_name: str) -> Path:
    written_values(env_name)
    return Path(_workdir().name) / f"values-{env_name}-0" / f"{rid}.yaml"


def release_values(rid: str, env_name: str, markers: bool = False) -> dict:
    values = written_values(env_name, markers)
    assert rid in values, f"helmfile wrote no values for {rid} ({env_name}): {sorted(values)}"
    return values[rid]


@functools.lru_cache(maxsize=None)
def env_values(env_name: str, markers: bool = False) -> dict:
    """The environment's values as helmfile renders them (deploy/env/), read through a one-release probe helmfile
    whose values template is `{{ .Values | toYaml }}`."""
    probe = Path(_workdir().name) / f"probe-{env_name}-{int(markers)}"
    probe.mkdir()
    envs = {name: {"values": [str(ROOT / f) for f in env["values"]]} for name, env in helmfile()["environments"].items()}
    (probe / "helmfile.yaml").write_text(yaml.safe_dump({"environments": envs}) + "---\n" + yaml.safe_dump(
        {"releases": [{"name": "env", "namespace": "probe", "chart": "./none", "values": ["env.yaml.gotmpl"]}]}))
    (probe / "env.yaml.gotmpl").write_text("{{ .Values | toYaml }}\n")
    run_tool("helmfile", "-e", env_name, "write-values", "--skip-deps", "--output-file-template",
             str(probe / "out.yaml"), env=helmfile_env(env_name, markers), cwd=probe)
    return yaml.safe_load((probe / "out.yaml").read_text())


CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition", "StorageClass",
                  "PersistentVolume", "PriorityClass", "MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"}


def parse_manifests(text: str, namespace: str, where: str) -> list[dict]:
    docs = []
    for doc in _yaml_docs(text):
        assert isinstance(doc, dict), f"{where}: rendered a non-object: {doc!r}"
        if doc.get("kind") not in CLUSTER_SCOPED:
            doc.setdefault("metadata", {}).setdefault("namespace", namespace)
        docs.append(doc)
    return docs


def helm_template(chart_dir: Path, name: str, namespace: str, values: Path | None = None, helm: str = "helm") -> list[dict]:
    """`helm template` of a chart: its documents, the namespace filled in as the install would."""
    args = ["template", name, str(chart_dir), "--namespace", namespace, "--kube-version", f"{K8S_VERSION}.0"]
    if values:
        args += ["--values", str(values)]
    return parse_manifests(run_tool(helm, *args).stdout, namespace, f"{chart_dir.name}")


@functools.lru_cache(maxsize=None)
def render_chart(rid: str, env_name: str) -> tuple[dict, ...]:
    """A local release's chart rendered by `helm template` with the values helmfile writes for env_name."""
    rel = release(rid)
    return tuple(helm_template(ROOT / rel["chart"], rel["name"], rel["namespace"], values_file(rid, env_name)))


@functools.lru_cache(maxsize=None)
def helmfile_template(env_name: str) -> tuple[dict, ...]:
    """`helmfile -e <env> template` of every release whose chart is local (the remote ones cannot be fetched here)."""
    selectors = [arg for rel in local_releases() for arg in ("--selector", f"name={rel['name']}")]
    proc = run_tool("helmfile", "-e", env_name, *selectors, "template", "--skip-deps",
                    "--args", f"--kube-version={K8S_VERSION}.0", env=helmfile_env(env_name))
    return tuple(parse_manifests(proc.stdout, "", f"helmfile -e {env_name} template"))


def all_rendered() -> Iterator[tuple[str, str, dict]]:
    for env_name in ENVIRONMENTS:
        for rel in local_releases():
            for doc in render_chart(release_id(rel), env_name):
                yield env_name, release_id(rel), doc


def docs_of(rid: str, env_name: str, kind: str) -> list[dict]:
    return [d for d in render_chart(rid, env_name) if d["kind"] == kind]


def knative_docs() -> list[dict]:
    out = []
    for path in sorted(KNATIVE_DIR.glob("*.yaml")):
        out.extend(_yaml_docs(path.read_text()))
    return out


def group_of(api_version: str) -> str:
    return api_version.split("/")[0] if "/" in api_version else ""


def is_core(doc: dict) -> bool:
    group = group_of(doc["apiVersion"])
    return group == "" or "." not in group or group.endswith(".k8s.io")


def containers(doc: dict) -> list[dict]:
    spec = doc.get("spec", {})
    tmpl = spec.get("template", {}).get("spec") or spec.get("jobTemplate", {}).get("spec", {}).get("template", {}).get("spec") or {}
    return list(tmpl.get("containers", [])) + list(tmpl.get("initContainers", []))


def env_of(container: dict) -> dict[str, dict]:
    return {e["name"]: e for e in container.get("env", [])}


# ================================================================================================================
# Schemas: kubernetes-validate for core kinds, the Knative CRDs of ../shared/k8s/crds for Knative kinds

# The operators' own custom resources: their CRDs ship inside the remote charts, which cannot be fetched here; the
# kubernetes-models npm packages (scripts/tools.sh, .tools/node) carry their schemas (types and required fields; they
# allow unknown fields). CloudNativePG and StarRocks have none here: the wiring tests below check those objects.
MODEL_PACKAGES = {"monitoring.coreos.com": "@kubernetes-models/prometheus-operator",
                  "operator.knative.dev": "@kubernetes-models/knative"}
NO_SCHEMA_HERE = {"postgresql.cnpg.io", "starrocks.com"}
MODELS_DIR = ROOT / ".tools" / "node"
VALIDATE_MODELS_JS = """
import { readFileSync } from 'fs';
const [docs, packages] = JSON.parse(readFileSync(0, 'utf8'));
const errors = [];
for (const d of docs) {
  const [group, version] = d.apiVersion.split('/');
  const model = (await import(`${packages[group]}/${group}/${version}/${d.kind}`))[d.kind];
  try { new model(d).validate(); } catch (e) { errors.push(`${d.kind}/${d.metadata.name}: ${e.message}`); }
}
console.log(JSON.stringify(errors));
"""


def model_errors(docs: list[dict]) -> list[str]:
    """Operators' custom resources validated by the kubernetes-models schemas (node, .tools/node)."""
    if not docs:
        return []
    if not (MODELS_DIR / "node_modules" / "@kubernetes-models").is_dir():
        missing("the kubernetes-models schemas (.tools/node)")
    proc = subprocess.run([tool("node"), "--input-type=module", "-e", VALIDATE_MODELS_JS], cwd=MODELS_DIR,
                          input=json.dumps([docs, MODEL_PACKAGES]), capture_output=True, text=True, timeout=TOOL_TIMEOUT)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


@functools.lru_cache(maxsize=None)
def crd_schemas() -> dict[tuple[str, str, str], dict]:
    """(group, version, kind) -> openAPIV3Schema of every served version of every CRD under ../shared/k8s/crds."""
    assert CRD_DIR.is_dir(), f"CRD folder missing: {CRD_DIR} (shared/ must sit beside the repo)"
    out: dict[tuple[str, str, str], dict] = {}
    for path in sorted(CRD_DIR.rglob("*.yaml")):
        for crd in _yaml_docs(path.read_text()):
            if crd.get("kind") == "CustomResourceDefinition":
                for version in crd["spec"]["versions"]:
                    schema = (version.get("schema") or {}).get("openAPIV3Schema")
                    if version.get("served") and schema:
                        out[(crd["spec"]["group"], version["name"], crd["spec"]["names"]["kind"])] = schema
    assert out, f"no CRD schema found under {CRD_DIR}"
    return out


def _closed(schema: Any) -> Any:
    """Unknown fields are errors wherever the CRD lists properties and does not preserve unknown fields."""
    if isinstance(schema, list):
        return [_closed(v) for v in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: _closed(v) for k, v in schema.items()}
    if "properties" in out and not out.get("x-kubernetes-preserve-unknown-fields"):
        out.setdefault("additionalProperties", False)
    return out


METADATA_SCHEMA = {"type": "object", "required": ["name"], "additionalProperties": False, "properties": {
    "name": {"type": "string", "pattern": r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", "maxLength": 63},
    "namespace": {"type": "string"},
    "labels": {"type": "object", "additionalProperties": {"type": "string"}},
    "annotations": {"type": "object", "additionalProperties": {"type": "string"}}}}


@functools.lru_cache(maxsize=None)
def crd_validator(group: str, version: str, kind: str) -> jsonschema.Draft7Validator:
    schema = crd_schemas().get((group, version, kind))
    assert schema is not None, f"no served CRD version for {group}/{version} {kind} in {CRD_DIR}"
    schema = _closed(copy.deepcopy(schema))
    schema.setdefault("properties", {}).update(apiVersion={"const": f"{group}/{version}"}, kind={"const": kind},
                                               metadata=METADATA_SCHEMA)  # the CRDs leave metadata a bare object
    return jsonschema.Draft7Validator(schema)


def schema_errors(doc: dict) -> list[str]:
    """Why a rendered object is not valid for Kubernetes 1.33 / the Knative CRDs (empty: valid)."""
    import kubernetes_validate  # test extra: kubernetes-validate

    where = f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
    if is_core(doc):
        try:
            kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            return [f"{where}: {'/'.join(map(str, exc.path)) or '<root>'}: {exc.message}"]
        return []
    group, version = doc["apiVersion"].split("/", 1)
    if group in NO_SCHEMA_HERE or group in MODEL_PACKAGES:
        return []  # no schema here / validated in a batch by model_errors
    return [f"{where}: {'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}"
            for e in crd_validator(group, version, doc["kind"]).iter_errors(doc)]


# ================================================================================================================
# helmfile.yaml


def test_helmfile_parses_with_environments_in_their_own_document():
    parts = helmfile_parts()
    assert len(parts) >= 2, "environments must be a document of their own, separated from the releases by ---"
    assert set(parts[0]) == {"environments"}, f"first document must hold only `environments`, has {sorted(parts[0])}"
    assert all("environments" not in p for p in parts[1:])
    envs = helmfile()["environments"]
    assert set(envs) == set(ENVIRONMENTS)
    for name, env in envs.items():
        for f in env["values"]:
            assert (ROOT / f).is_file(), f"environment {name}: missing values file {f}"


def test_helmfile_is_plain_yaml():
    """Helmfile v1 renders Go templates only in *.gotmpl files: a {{ }} in helmfile.yaml would be taken literally."""
    code = "\n".join(line.split("#", 1)[0] for line in HELMFILE.read_text().splitlines())
    assert "{{" not in code, "helmfile.yaml holds Go template syntax: move it into a .gotmpl values file"


def test_every_release_is_complete_and_its_values_live_in_deploy_values():
    names = [release_id(r) for r in releases()]
    assert len(names) == len(set(names)), f"duplicate releases: {names}"
    for rel in releases():
        for key in ("name", "namespace", "chart", "values"):
            assert rel.get(key), f"{release_id(rel)}: missing {key}"
        for f in rel["values"]:
            assert isinstance(f, str) and f.startswith("deploy/values/"), f"{release_id(rel)}: values {f!r}"
            assert re.fullmatch(r"deploy/values/[\w.-]+\.yaml(\.gotmpl)?", f), f
            assert (ROOT / f).is_file(), f"{release_id(rel)}: missing {f}"


EXACT_VERSION = re.compile(r"^v?\d+\.\d+\.\d+$")


def test_every_chart_version_is_pinned():
    repos = {r["name"] for r in helmfile()["repositories"]}
    for rel in releases():
        rid = release_id(rel)
        if is_local(rel):
            chart_dir = ROOT / rel["chart"]
            assert (chart_dir / "Chart.yaml").is_file(), f"{rid}: no chart at {rel['chart']}"
            version = str(yaml.safe_load((chart_dir / "Chart.yaml").read_text())["version"])
            assert EXACT_VERSION.match(version), f"{rid}: local chart version {version!r} is not exact"
            assert rel.get("version") in (None, version), f"{rid}: version differs from its Chart.yaml"
        else:
            version = str(rel.get("version", ""))
            assert EXACT_VERSION.match(version), f"{rid}: chart version {version!r} is not pinned (no ranges/latest)"
            repo = rel["chart"].split("/", 1)[0]
            assert repo in repos, f"{rid}: chart repository {repo!r} not declared in repositories"
    for repo in helmfile()["repositories"]:
        assert repo["url"].startswith("https://"), repo


def test_version_check_rejects_ranges():
    for bad in ("~1.2.0", "^81.6", ">=1.0.0", "1.x", "*", "latest", "1.2", ""):
        assert not EXACT_VERSION.match(bad), bad


def test_needs_name_existing_releases_and_order_without_cycles():
    ids = {release_id(r) for r in releases()}
    graph = {release_id(r): list(r.get("needs", [])) for r in releases()}
    for rid, needs in graph.items():
        for need in needs:
            assert need in ids, f"{rid} needs {need!r}, which is not a release (use namespace/name)"
    done: set[str] = set()
    while len(done) < len(graph):
        ready = [r for r, needs in graph.items() if r not in done and set(needs) <= done]
        assert ready, f"cycle in needs among {sorted(set(graph) - done)}"
        done.update(ready)


def _needs_closure(rid: str) -> set[str]:
    seen: set[str] = set()
    todo = list(release(rid).get("needs", []))
    while todo:
        n = todo.pop()
        if n not in seen:
            seen.add(n)
            todo.extend(release(n).get("needs", []))
    return seen


def test_custom_resources_need_their_crd_release_and_skip_validation_on_install():
    for rel in releases():
        rid = release_id(rel)
        groups = set(REMOTE_CHART_CR_GROUPS.get(rid, set()))
        if is_local(rel):
            for env_name in ENVIRONMENTS:
                groups |= {group_of(d["apiVersion"]) for d in render_chart(rid, env_name) if not is_core(d)}
        for group in groups:
            assert group in CRD_PROVIDERS, f"{rid}: custom resources of unknown API group {group}"
            provider = CRD_PROVIDERS[group]
            if provider == rid:
                continue
            assert provider in _needs_closure(rid), f"{rid} creates {group} objects but does not need {provider}"
            assert rel.get("disableValidationOnInstall") is True, \
                f"{rid} creates {group} objects (CRD from {provider}): set disableValidationOnInstall: true"


# ================================================================================================================
# Values and charts, rendered by helmfile and helm


@pytest.mark.parametrize("env_name", ENVIRONMENTS)
def test_environment_values_render(env_name):
    values = env_values(env_name)
    for key in ("images", "knative", "s3", "postgres", "nessie", "starrocks", "superset", "monitoring"):
        assert key in values, f"{env_name}: environment values lack {key!r}"


def test_prod_environment_requires_its_site_settings():
    """Without ATEDA_IMAGE_REGISTRY / ATEDA_DOMAIN exported, `helmfile -e prod` stops (requiredEnv)."""
    for missing in ("ATEDA_IMAGE_REGISTRY", "ATEDA_DOMAIN"):
        env = {k: v for k, v in PROD_ENV.items() if k != missing}
        proc = run_tool("helmfile", "-e", "prod", "write-values", "--skip-deps", "--output-file-template",
                        str(Path(_workdir().name) / "never" / "{{ .Release.Name }}.yaml"), env=env, check=False)
        assert proc.returncode != 0 and missing in proc.stderr, proc.stderr
    assert env_values("prod")["images"]["registry"] == PROD_ENV["ATEDA_IMAGE_REGISTRY"]


def test_helmfile_values_templates_are_strict(tmp_path):
    """helmfile stops on a .Values key the environment does not have (so a typo in a values template fails here)."""
    shutil.copy(HELMFILE, tmp_path / "helmfile.yaml")
    shutil.copytree(DEPLOY / "env", tmp_path / "deploy" / "env")
    shutil.copytree(DEPLOY / "values", tmp_path / "deploy" / "values")
    broken = tmp_path / "deploy" / "values" / "knative.yaml.gotmpl"
    broken.write_text(broken.read_text() + "\ntypo: {{ .Values.knative.domian }}\n")
    proc = run_tool("helmfile", "-e", "kind", "--selector", "name=knative", "write-values", "--skip-deps",
                    "--output-file-template", str(tmp_path / "out.yaml"), cwd=tmp_path, check=False)
    assert proc.returncode != 0 and "domian" in proc.stderr, proc.stderr


@pytest.mark.parametrize("env_name", ENVIRONMENTS)
def test_release_values_render_for_every_environment(env_name):
    """helmfile writes a values mapping for every release (remote ones too: writing values needs no chart)."""
    written = written_values(env_name)
    assert set(written) == {release_id(r) for r in releases()}
    for rid, values in written.items():
        assert isinstance(values, dict), f"{rid} ({env_name}): values are not a mapping"


@pytest.mark.parametrize("helm", ["helm", "helm4"])  # helm 3.15 (what helmfile drives here) and helm 4.1
@pytest.mark.parametrize("env_name", ENVIRONMENTS)
@pytest.mark.parametrize("rid", [release_id(r) for r in local_releases()])
def test_local_charts_lint_strictly_with_each_environments_values(rid, env_name, helm):
    rel = release(rid)
    proc = run_tool(helm, "lint", "--strict", str(ROOT / rel["chart"]), "--namespace", rel["namespace"],
                    "--kube-version", f"{K8S_VERSION}.0", "--values", str(values_file(rid, env_name)), check=False)
    assert proc.returncode == 0 and "0 chart(s) failed" in proc.stdout, proc.stdout + proc.stderr


@pytest.mark.parametrize("env_name", ENVIRONMENTS)
@pytest.mark.parametrize("rid", [release_id(r) for r in local_releases()])
def test_local_charts_render_to_valid_kubernetes_objects(rid, env_name):
    docs = render_chart(rid, env_name)
    assert docs, f"{rid} renders nothing"
    seen, problems = set(), []
    for doc in docs:
        for key in ("apiVersion", "kind", "metadata"):
            assert key in doc, f"{rid}: rendered object without {key}: {doc}"
        ident = (doc["apiVersion"], doc["kind"], doc["metadata"].get("namespace"), doc["metadata"]["name"])
        assert ident not in seen, f"{rid}: duplicate object {ident}"
        seen.add(ident)
        problems += schema_errors(doc)
    problems += model_errors([d for d in docs if group_of(d["apiVersion"]) in MODEL_PACKAGES])
    assert not problems, f"{rid} ({env_name}):\n" + "\n".join(problems)


@pytest.mark.parametrize("env_name", ENVIRONMENTS)
def test_helmfile_template_renders_the_local_releases_as_helm_does(env_name):
    """`helmfile -e <env> template` (what `helmfile sync` would apply) gives exactly the objects checked above."""
    key = lambda d: json.dumps(d, sort_keys=True)  # noqa: E731
    by_helmfile = sorted(map(key, helmfile_template(env_name)))
    by_helm = sorted(key(d) for rel in local_releases() for d in render_chart(release_id(rel), env_name))
    assert by_helmfile == by_helm


# Remote charts: no chart repository is reachable here, so helm never renders them; their values (written by helmfile)
# are checked against the keys their pinned chart versions document by the wiring tests below.
REMOTE_NOT_RENDERED = {"monitoring/kube-prometheus-stack", "knative-operator/knative-operator", "cnpg-system/cnpg",
                       "ateda/nessie", "starrocks/starrocks-operator", "starrocks/starrocks",
                       "superset/superset"}  # Superset's values and bundle: tests/test_superset.py


def test_the_remote_charts_are_the_known_ones_whose_values_are_checked_by_key():
    """A new remote release needs its values checked here by hand: helm cannot render it offline."""
    assert {release_id(r) for r in releases() if not is_local(r)} == REMOTE_NOT_RENDERED


@pytest.mark.parametrize("env_name", ENVIRONMENTS)
def test_helm_4_renders_the_local_charts_as_helm_3_does(env_name):
    for rel in local_releases():
        rid = release_id(rel)
        assert helm_template(ROOT / rel["chart"], rel["name"], rel["namespace"], values_file(rid, env_name), "helm4") \
            == list(render_chart(rid, env_name)), f"{rid} ({env_name}) renders differently with helm 4"


def test_schema_checks_can_fail():
    svc = copy.deepcopy(next(d for d in knative_docs() if d["kind"] == "Service"))
    assert not schema_errors(svc)
    svc["spec"]["template"]["spec"]["containerz"] = []
    assert schema_errors(svc), "an unknown field in a Knative Service must fail"
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}, "data": {"a": 1}}
    assert schema_errors(cm), "a non-string ConfigMap value must fail"
    with pytest.raises(AssertionError):
        schema_errors({"apiVersion": "nope.knative.dev/v1", "kind": "Thing", "metadata": {"name": "x"}})
    ks = copy.deepcopy(docs_of("knative-serving/knative", "kind", "KnativeServing")[0])
    sm = copy.deepcopy(docs_of("ateda/ateda-platform", "kind", "ServiceMonitor")[0])
    assert not model_errors([ks, sm])
    ks["spec"]["ingress"]["kourier"]["enabled"] = "yes"
    sm["spec"]["endpoints"][0]["port"] = 9464
    assert len(model_errors([ks, sm])) == 2, "wrong types in a KnativeServing and a ServiceMonitor must fail"


def test_chart_render_catches_broken_templates(tmp_path):
    chart = tmp_path / "c"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text("apiVersion: v2\nname: c\nversion: 0.1.0\n")
    (chart / "values.yaml").write_text("a: 1\n")
    (chart / "templates" / "x.yaml").write_text("kind: ConfigMap\n{{ .Values.a | nosuchfunc }}\n")
    with pytest.raises(AssertionError, match="nosuchfunc"):
        helm_template(chart, "c", "default")


# ================================================================================================================
# No `latest`, no secrets


IMAGE_REF = re.compile(r"^(?:[\w.-]+(?::\d+)?/)?[\w./-]+:([\w][\w.-]{0,127})$")


def _text_files(*dirs: Path) -> Iterator[Path]:
    for d in dirs:
        for p in sorted(d.rglob("*")):
            if p.is_file() and p.suffix in (".yaml", ".yml", ".gotmpl", ".tpl", ".json", ".sh", ".md", "") \
                    and "__pycache__" not in p.parts:
                yield p


def test_no_latest_tag_anywhere_in_deploy_docker_knative():
    offenders = []
    for path in [HELMFILE, *_text_files(DEPLOY, ROOT / "docker", KNATIVE_DIR)]:
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if re.search(r"[\w./-]+:latest\b|\btag:\s*[\"']?latest\b|\bFROM\s+[\w./-]+\s*$", line):
                offenders.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()}")
    assert not offenders, "unpinned images:\n" + "\n".join(offenders)


def _image_refs(obj: Any, path: str = "") -> Iterator[tuple[str, str]]:
    if isinstance(obj, dict):
        repo, tag = obj.get("repository"), obj.get("tag")
        if isinstance(repo, str) and "tag" in obj:
            yield path, f"{repo}:{tag}"
        for k, v in obj.items():
            if k in ("image", "mcImage", "setupImage") and isinstance(v, str):
                yield f"{path}.{k}", v
            else:
                yield from _image_refs(v, f"{path}.{k}")
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _image_refs(v, f"{path}[{i}]")


def test_every_image_in_values_and_rendered_charts_has_a_pinned_tag():
    refs = []
    for env_name in ENVIRONMENTS:
        for rel in releases():
            refs += [(f"{release_id(rel)} values{p}", v) for p, v in _image_refs(release_values(release_id(rel), env_name))]
        refs += [(f"{rid} {d['kind']}/{d['metadata']['name']}", c["image"])
                 for _, rid, d in all_rendered() for c in containers(d)]
    assert refs
    for where, ref in refs:
        m = IMAGE_REF.match(ref)
        assert m and m.group(1) != "latest" and re.search(r"\d", m.group(1)), f"{where}: image {ref!r} is not pinned"


SECRET_KEY = re.compile(r"password|secret|token|key", re.I)
# Keys that *name* a Secret, or a key inside one: references, not values.
REFERENCE_LEAF = re.compile(r"^(existingSecret|passwordSecret|credentialsSecret|tokenSecret|rootPasswordSecret|"
                            r"s3CredentialsSecret|[a-z]+Key|awsAccessKeyId|awsSecretAccessKey|secretName)$")
REFERENCE_PARENT = re.compile(r"(?i)(^secret$|Secret$|^secretKeyRef$|^secretRef$)")
K8S_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,252}$")
WEAK = {"minioadmin", "admin123", "changeme", "password123", "secret", "hunter2"}


def secret_literal_problems(values: Any, path: tuple[str, ...] = ()) -> list[str]:
    """Scalars under password/secret/token/key keys must come from a template (env var) or name a Secret (key)."""
    problems: list[str] = []
    if isinstance(values, dict):
        for k, v in values.items():
            problems += secret_literal_problems(v, (*path, str(k)))
        return problems
    if isinstance(values, list):
        for i, v in enumerate(values):
            problems += secret_literal_problems(v, (*path, str(i)))
        return problems
    if not path or values is None or isinstance(values, bool) or values == "":
        return problems
    if isinstance(values, str) and re.search(r"AKIA[0-9A-Z]{16}|-----BEGIN", values):
        return [f"{'.'.join(path)}: credential material"]
    leaf = path[-1]
    if not any(SECRET_KEY.search(p) for p in path):
        return problems
    text = str(values)
    if text.startswith("<env:") or "{{" in text:
        return problems  # a template reference (requiredEnv/env), never a literal
    is_reference = REFERENCE_LEAF.match(leaf) or any(REFERENCE_PARENT.search(p) for p in path[:-1])
    if is_reference and isinstance(values, str) and K8S_NAME.match(text) and text.lower() not in WEAK:
        return problems
    return [f"{'.'.join(path)}: literal value {text[:6]!r}... (reference a Secret or use requiredEnv)"]


def test_secret_check_can_fail():
    assert secret_literal_problems({"auth": {"password": "hunter2"}})
    assert secret_literal_problems({"rootPassword": "s3cr3t-value"})
    assert secret_literal_problems({"existingSecret": "minioadmin"})
    assert secret_literal_problems({"x": "AKIAABCDEFGHIJKLMNOP"})
    assert secret_literal_problems({"secret": {"name": "db", "password": 12345}})
    assert not secret_literal_problems({"admin": {"existingSecret": "grafana-admin", "passwordKey": "admin-password"}})
    assert not secret_literal_problems({"jdbc": {"secret": {"name": "pg", "password": "password"}}})
    assert not secret_literal_problems({"token": "<env:ATEDA_BRIDGE_TOKEN>"})


def _values_sources() -> Iterator[tuple[str, Any]]:
    for env_name in ENVIRONMENTS:
        yield f"env {env_name}", env_values(env_name, markers=True)
        for rel in releases():
            yield f"{release_id(rel)} ({env_name})", release_values(release_id(rel), env_name, markers=True)
    for values in sorted(CHARTS.glob("*/values.yaml")):
        yield str(values.relative_to(ROOT)), yaml.safe_load(values.read_text())


def test_no_secret_literals_in_values():
    problems = [f"{where}: {p}" for where, values in _values_sources() for p in secret_literal_problems(values)]
    assert not problems, "\n".join(problems)


def test_no_secret_objects_or_inline_secret_values_in_rendered_charts():
    for env_name, rid, doc in all_rendered():
        assert doc["kind"] != "Secret", f"{rid}: renders a Secret ({doc['metadata']['name']}): create it outside Helm"
        for c in containers(doc):
            for e in c.get("env", []):
                if SECRET_KEY.search(e["name"]) and "value" in e:
                    assert not e["value"], f"{rid} {doc['metadata']['name']}: env {e['name']} has a literal value"


def _secret_refs() -> set[tuple[str, str, str]]:
    """(namespace, secret, key) referenced by the platform: rendered charts, knative/, and the remote charts' values."""
    refs = set()
    for _, rid, doc in all_rendered():
        for c in containers(doc):
            for e in c.get("env", []):
                ref = e.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    refs.add((doc["metadata"]["namespace"], ref["name"], ref["key"]))
        if doc["kind"] == "Cluster":  # CloudNativePG bootstrap owner and managed roles' credentials (basic-auth)
            names = [doc["spec"]["bootstrap"]["initdb"]["secret"]["name"]]
            names += [r["passwordSecret"]["name"] for r in doc["spec"].get("managed", {}).get("roles", [])]
            for name in names:
                refs |= {(doc["metadata"]["namespace"], name, "username"), (doc["metadata"]["namespace"], name, "password")}
    for doc in knative_docs():
        for c in containers(doc):
            for e in c.get("env", []):
                ref = e.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    refs.add((doc["metadata"]["namespace"], ref["name"], ref["key"]))
    for env_name in ENVIRONMENTS:
        nessie = release_values("ateda/nessie", env_name)
        s3 = nessie["catalog"]["storage"]["s3"]["defaultOptions"]["accessKeySecret"]
        refs |= {("ateda", s3["name"], s3["awsAccessKeyId"]), ("ateda", s3["name"], s3["awsSecretAccessKey"])}
        jdbc = nessie["jdbc"]["secret"]
        refs |= {("ateda", jdbc["name"], jdbc["username"]), ("ateda", jdbc["name"], jdbc["password"])}
        grafana = release_values("monitoring/kube-prometheus-stack", env_name)["grafana"]["admin"]
        refs |= {("monitoring", grafana["existingSecret"], grafana["userKey"]),
                 ("monitoring", grafana["existingSecret"], grafana["passwordKey"])}
        starrocks = release_values("starrocks/starrocks", env_name)["initPassword"]
        refs.add(("starrocks", starrocks["passwordSecret"], "password"))
        for e in release_values("superset/superset", env_name)["extraEnvRaw"]:
            ref = e["valueFrom"]["secretKeyRef"]
            refs.add(("superset", ref["name"], ref["key"]))
    return refs


def _secrets_created() -> set[tuple[str, str, str]]:
    created = set()
    text = SECRETS_SCRIPT.read_text()
    arrays = {m.group(1): re.findall(r"--from-literal=(\w[\w.-]*)=", m.group(2))
              for m in re.finditer(r"^(\w+)=\((.*?)\)$", text, re.M)}
    for m in re.finditer(r"^secret (\S+) (\S+) ((?:[^\n]*\\\n)*[^\n]*)$", text, re.M):
        keys = re.findall(r"--from-literal=(\w[\w.-]*)=", m.group(3))
        for arr in re.findall(r'"\$\{(\w+)\[@\]\}"', m.group(3)):
            keys += arrays.get(arr, [])
        created |= {(m.group(1), m.group(2), k) for k in keys}
    return created


def test_secrets_script_creates_every_secret_the_platform_references():
    refs, created = _secret_refs(), _secrets_created()
    assert created, "could not read the Secrets deploy/scripts/secrets.sh creates"
    missing = sorted(refs - created)
    assert not missing, f"Secrets referenced but never created by {SECRETS_SCRIPT.relative_to(ROOT)}: {missing}"


# ================================================================================================================
# Cross-release wiring


def knative_services() -> dict[str, dict]:
    return {d["metadata"]["name"]: d for d in knative_docs() if d["kind"] == "Service"}


def function_env(service: str) -> dict[str, dict]:
    return env_of(knative_services()[service]["spec"]["template"]["spec"]["containers"][0])


@pytest.mark.parametrize("env_name", ENVIRONMENTS)
def test_platform_chart_carries_every_knative_manifest_but_the_namespace(env_name):
    rendered = {(d["kind"], d["metadata"]["name"]): d for d in render_chart("ateda/ateda-platform", env_name)}
    registry, tag = env_values(env_name)["images"]["registry"], env_values(env_name)["images"]["tag"]
    for doc in knative_docs():
        key = (doc["kind"], doc["metadata"]["name"])
        if doc["kind"] == "Namespace":
            assert key not in rendered, "the Namespace is created before Helm (deploy/scripts/secrets.sh)"
            continue
        assert key in rendered, f"{key} from knative/ is missing from the ateda-platform chart"
        expected = copy.deepcopy(doc)
        if doc["kind"] == "Service" and doc["apiVersion"] == "serving.knative.dev/v1":
            c = expected["spec"]["template"]["spec"]["containers"][0]
            name = re.match(r"^kind\.local/([^:]+):", c["image"]).group(1)
            c["image"] = f"{registry}/{name}:{tag}"
            c["imagePullPolicy"] = env_values(env_name)["images"]["pullPolicy"]
        assert rendered[key] == expected, f"{key}: the chart changed more than the image"
    if env_name == "kind":
        for name, svc in knative_services().items():
            assert rendered[("Service", name)]["spec"]["template"]["spec"]["containers"][0]["image"] == \
                svc["spec"]["template"]["spec"]["containers"][0]["image"], "on Kind the images are knative/'s own"


def test_platform_chart_links_point_at_the_repository_manifests_and_dashboards():
    chart = CHARTS / "ateda-platform"
    assert (chart / "knative").is_symlink() and (chart / "knative").resolve() == KNATIVE_DIR
    assert (chart / "dashboards").is_symlink() and (chart / "dashboards").resolve() == DASHBOARDS


def test_dashboards_are_provisioned_as_configmaps_for_the_grafana_sidecar():
    cms = {d["metadata"]["name"]: d for d in docs_of("ateda/ateda-platform", "kind", "ConfigMap")}
    sidecar = release_values("monitoring/kube-prometheus-stack", "kind")["grafana"]["sidecar"]["dashboards"]
    assert sidecar["enabled"] and sidecar["label"] == "grafana_dashboard" and str(sidecar["labelValue"]) == "1"
    files = sorted(DASHBOARDS.glob("*.json"))
    assert len(files) >= 4
    for f in files:
        cm = cms.get(f"ateda-dashboard-{f.stem}")
        assert cm, f"no ConfigMap for {f.name}"
        assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
        ns = cm["metadata"]["namespace"]
        assert sidecar.get("searchNamespace") == "ALL" or ns == "monitoring", f"{f.name}: sidecar cannot see {ns}"
        assert json.loads(cm["data"][f.name]) == json.loads(f.read_text())


def test_prometheus_picks_up_every_monitor():
    spec = release_values("monitoring/kube-prometheus-stack", "kind")["prometheus"]["prometheusSpec"]
    assert spec["serviceMonitorSelectorNilUsesHelmValues"] is False
    assert spec["podMonitorSelectorNilUsesHelmValues"] is False
    assert spec.get("enableOTLPReceiver") is True, "queue-proxies push request metrics over OTLP"
    promoted = set(spec["additionalConfig"]["otlp"]["promoteResourceAttributes"])
    assert {"k8s.namespace.name", "kn.service.name", "kn.revision.name"} <= promoted


def test_function_metrics_are_scraped_on_the_port_the_code_serves():
    from ateda.config import Settings

    default = Settings.from_env({}).metrics.port  # ATEDA_METRICS_PORT's default, from the one settings table
    assert f"ATEDA_METRICS_PORT={default}" in DOCKERFILE.read_text().replace(" ", "")
    svc = next(d for d in docs_of("ateda/ateda-platform", "kind", "Service") if d["metadata"]["name"] == "ateda-functions-metrics")
    assert svc["spec"]["ports"][0]["targetPort"] == default
    selector = svc["spec"]["selector"]
    for name, ksvc in knative_services().items():
        labels = ksvc["spec"]["template"]["metadata"]["labels"]
        assert all(labels.get(k) == v for k, v in selector.items()), f"{name}'s pods are not selected for scraping"
        env = function_env(name)
        assert env.get("ATEDA_METRICS_PORT", {"value": str(default)})["value"] == str(default)
    sm = docs_of("ateda/ateda-platform", "kind", "ServiceMonitor")[0]
    assert all(sm["spec"]["selector"]["matchLabels"][k] == v for k, v in sm["spec"]["selector"]["matchLabels"].items()
               if k in svc["metadata"]["labels"])
    assert sm["spec"]["endpoints"][0]["port"] == svc["spec"]["ports"][0]["name"]


@pytest.mark.parametrize("env_name", ENVIRONMENTS)
def test_knative_serving_kourier_domain_and_metrics(env_name):
    ks = docs_of("knative-serving/knative", env_name, "KnativeServing")[0]
    ke = docs_of("knative-serving/knative", env_name, "KnativeEventing")[0]
    kn = env_values(env_name)["knative"]
    assert ks["spec"]["ingress"]["kourier"]["enabled"] is True
    assert ks["spec"]["config"]["network"]["ingress-class"] == "kourier.ingress.networking.knative.dev"
    assert list(ks["spec"]["config"]["domain"]) == [kn["domain"]]
    obs = ks["spec"]["config"]["observability"]
    assert obs["metrics-protocol"] == "prometheus" and obs["request-metrics-protocol"] in ("prometheus", "http/protobuf")
    assert ke["spec"]["config"]["observability"]["metrics-protocol"] == "prometheus"
    assert "kind.local" in ks["spec"]["config"]["deployment"]["registries-skipping-tag-resolving"]
    if env_name == "kind":
        assert kn["domain"] == "127.0.0.1.sslip.io"
        assert ks["spec"]["ingress"]["kourier"]["service-type"] == "NodePort"
        port = ks["spec"]["ingress"]["kourier"]["http-port"]
        mappings = [m for n in yaml.safe_load(KIND_CONFIG.read_text())["nodes"] for m in n.get("extraPortMappings", [])]
        assert any(m["containerPort"] == port and m["hostPort"] == 80 for m in mappings), \
            f"Kourier NodePort {port} is not published on the host's port 80 by kind/cluster.yaml"


def test_s3_store_buckets_notifications_and_kind_ports():
    docs = render_chart("ateda/s3-store", "kind")
    sts = next(d for d in docs if d["kind"] == "StatefulSet")
    c = sts["spec"]["template"]["spec"]["containers"][0]
    env = env_of(c)
    bridge = knative_services()["ateda-minio-bridge"]
    nid = release_values("ateda/s3-store", "kind")["notifications"]["id"]
    assert env[f"MINIO_NOTIFY_WEBHOOK_ENABLE_{nid}"]["value"] == "on"
    endpoint = env[f"MINIO_NOTIFY_WEBHOOK_ENDPOINT_{nid}"]["value"]
    assert endpoint == f"http://{bridge['metadata']['name']}.{bridge['metadata']['namespace']}.svc.cluster.local"
    token_ref = env[f"MINIO_NOTIFY_WEBHOOK_AUTH_TOKEN_{nid}"]["valueFrom"]["secretKeyRef"]
    bridge_ref = function_env("ateda-minio-bridge")["ATEDA_BRIDGE_TOKEN"]["valueFrom"]["secretKeyRef"]
    assert token_ref == bridge_ref, "MinIO must send the token the bridge checks"
    queue_dir = env[f"MINIO_NOTIFY_WEBHOOK_QUEUE_DIR_{nid}"]["value"]
    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    claims = {t["metadata"]["name"] for t in sts["spec"]["volumeClaimTemplates"]}
    assert mounts.get(queue_dir) in claims, "queue_dir must be on a persistent volume"
    setup = next(d for d in docs if d["kind"] == "ConfigMap")
    rules = json.loads(setup["data"]["notification.json"])["QueueConfigurations"]
    assert rules and all(r["QueueArn"] == f"arn:minio:sqs::{nid}:webhook" for r in rules)
    assert all(r["Events"] == ["s3:ObjectCreated:*"] for r in rules), "multipart uploads arrive as CompleteMultipartUpload"
    assert any(f["Value"] == ".avro" for r in rules for f in r["Filter"]["Key"]["FilterRules"])
    for bucket in ("alerts", "lake"):
        assert f"--bucket {bucket}" in setup["data"]["setup.sh"]
    assert function_env("ateda-split")["ATEDA_BUCKET"]["value"] == "alerts"
    svc = next(d for d in docs if d["kind"] == "Service" and d["metadata"]["name"] == "minio")
    s3_endpoint = function_env("ateda-split")["ATEDA_S3_ENDPOINT"]["value"]
    assert s3_endpoint == f"http://minio.{svc['metadata']['namespace']}.svc.cluster.local:{svc['spec']['ports'][0]['port']}"
    node_ports = {p["nodePort"] for p in svc["spec"]["ports"]}
    mappings = {m["containerPort"] for n in yaml.safe_load(KIND_CONFIG.read_text())["nodes"] for m in n.get("extraPortMappings", [])}
    assert node_ports <= mappings, f"MinIO NodePorts {node_ports} not published by kind/cluster.yaml"


@pytest.mark.parametrize("env_name", ENVIRONMENTS)
def test_nessie_matches_what_the_functions_use(env_name):
    values = release_values("ateda/nessie", env_name)
    assert values["versionStoreType"] == "JDBC2" and values["jdbc"]["jdbcUrl"].startswith("jdbc:postgresql://ateda-pg-rw.")
    assert values["catalog"]["enabled"] is True
    wh = {w["name"]: w["location"] for w in values["catalog"]["iceberg"]["warehouses"]}
    assert wh[values["catalog"]["iceberg"]["defaultWarehouse"]] == function_env("ateda-bronze")["ATEDA_WAREHOUSE"]["value"]
    s3 = values["catalog"]["storage"]["s3"]["defaultOptions"]
    assert s3["endpoint"] == function_env("ateda-bronze")["ATEDA_S3_ENDPOINT"]["value"]
    assert s3["pathStyleAccess"] is True and s3["authType"] == "STATIC" and s3["requestSigningEnabled"] is False
    bronze_keys = function_env("ateda-bronze")["AWS_ACCESS_KEY_ID"]["valueFrom"]["secretKeyRef"]
    assert s3["accessKeySecret"]["name"] == bronze_keys["name"]
    rel = release("ateda/nessie")
    assert function_env("ateda-bronze")["ATEDA_CATALOG_URI"]["value"] == \
        f"http://{rel['name']}.{rel['namespace']}.svc.cluster.local:19120/iceberg"


def test_starrocks_catalog_job_creates_an_iceberg_rest_catalog_over_nessie():
    cm = docs_of("starrocks/starrocks-catalog", "kind", "ConfigMap")[0]
    sql = cm["data"]["create-catalog.sh"]
    nessie = function_env("ateda-bronze")
    for prop, value in {
        "type": "iceberg",
        "iceberg.catalog.type": "rest",
        "iceberg.catalog.uri": nessie["ATEDA_CATALOG_URI"]["value"],
        "iceberg.catalog.vended-credentials-enabled": "false",
        "aws.s3.endpoint": nessie["ATEDA_S3_ENDPOINT"]["value"],
        "aws.s3.enable_path_style_access": "true",
        "aws.s3.enable_ssl": "false",
        "aws.s3.access_key": "${AWS_ACCESS_KEY_ID}",
        "aws.s3.secret_key": "${AWS_SECRET_ACCESS_KEY}",
    }.items():
        assert f'"{prop}" = "{value}"' in sql, f"catalog property {prop} = {value} missing"
    values = release_values("starrocks/starrocks", "kind")
    assert values["starrocksCluster"]["name"] == "starrocks"
    assert release_values("starrocks/starrocks-catalog", "kind")["feHost"].startswith("starrocks-fe-service.starrocks.")
    job = docs_of("starrocks/starrocks-catalog", "kind", "Job")[0]
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "post-install,post-upgrade"


# ================================================================================================================
# Docs


def test_deploy_doc_covers_the_essentials():
    doc = (ROOT / "docs" / "deploy.md").read_text()
    for needle in ("task deploy", "helmfile", "secrets.sh", "aws --endpoint-url", "Grafana", "prod",
                   "ATEDA_IMAGE_REGISTRY", "ATEDA_DOMAIN", "task down"):
        assert needle in doc, f"docs/deploy.md does not mention {needle!r}"
