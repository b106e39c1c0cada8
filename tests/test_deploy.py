"""Offline checks of the deployment: helmfile.yaml, its values, the local charts, the image, the dashboards, the tasks.

Nothing here talks to a cluster, a registry or a chart repository, and no helm/helmfile binary is needed: the Go
templates of the values files (deploy/values/*.gotmpl, deploy/env/*.gotmpl) and of the local charts
(deploy/charts/*) are rendered by a small Go-template interpreter below that implements the subset they use (with
the Sprig/Helm/Helmfile functions they call), strictly: an unknown function, an unsupported action or, in helmfile
values, a missing `.Values` key fails the test. The rendered Kubernetes objects are then checked like the manifests in
knative/ (core kinds with kubernetes-validate) and cross-checked against each other: the names, ports, Secrets and
settings that have to agree across releases.

Dashboards: every panel query must parse as PromQL (promql-parser) and name only metrics the code exports
(shared/ateda/serving/metrics.py, read from the live registry) or that Knative/Kubernetes export (METRIC_ALLOWLIST, each
with its source).
"""

from __future__ import annotations

import copy
import fnmatch
import functools
import json
import os
import posixpath
import re
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
HELMFILE = ROOT / "helmfile.yaml"
DEPLOY = ROOT / "deploy"
CHARTS = DEPLOY / "charts"
DASHBOARDS = DEPLOY / "dashboards"
DOCKERFILE = ROOT / "docker" / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
KNATIVE_DIR = ROOT / "knative"
KIND_CONFIG = ROOT / "kind" / "cluster.yaml"
TASKFILE = ROOT / "Taskfile.yml"
SECRETS_SCRIPT = DEPLOY / "scripts" / "secrets.sh"
IMAGES_SCRIPT = DEPLOY / "scripts" / "images.sh"
SMOKE_SCRIPT = DEPLOY / "scripts" / "smoke.sh"
K8S_VERSION = "1.33"

ENVIRONMENTS = ("kind", "prod")
# What a person deploying to prod exports (deploy/env/prod.yaml.gotmpl uses requiredEnv for these).
PROD_ENV = {"ATEDA_IMAGE_REGISTRY": "registry.example.org/ateda", "ATEDA_DOMAIN": "kn.example.org"}

# Knative Service -> functions/ folder, as in knative/2*-svc-*.yaml.
FUNCTIONS = {"minio-bridge": "minio_bridge", "split": "split", "bronze": "bronze", "dead-letter": "dead_letter",
             "dbt-refresh": "dbt_refresh", "crossmatch": "crossmatch", "maintenance": "maintenance"}

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

# Metrics the dashboards may use besides the ones shared/ateda/serving/metrics.py exports, with where each comes from.
# Knative >= 1.19 emits OpenTelemetry instruments; Prometheus (OTLP receiver with UnderscoreEscapingWithSuffixes,
# or the Prometheus exporter) names them with dots -> underscores, unit suffixes (s -> _seconds; {annotations}
# dropped) and _bucket/_sum/_count for histograms.
METRIC_ALLOWLIST = {
    # knative/serving autoscaler (pkg/autoscaler/metrics; knative docs serving/observability/metrics/serving-metrics)
    "kn_revision_pods_desired": "autoscaler kn.revision.pods.desired (Int64Gauge, {pod})",
    "kn_revision_pods_requested": "autoscaler kn.revision.pods.requested",
    "kn_revision_pods_count": "autoscaler kn.revision.pods.count",
    "kn_revision_pods_not_ready_count": "autoscaler kn.revision.pods.not_ready.count",
    "kn_revision_pods_pending_count": "autoscaler kn.revision.pods.pending.count",
    "kn_revision_concurrency_stable": "autoscaler kn.revision.concurrency.stable (Float64Gauge, {concurrency})",
    "kn_revision_concurrency_panic": "autoscaler kn.revision.concurrency.panic",
    "kn_revision_concurrency_target": "autoscaler kn.revision.concurrency.target",
    "kn_revision_panic_mode": "autoscaler kn.revision.panic.mode (Int64 gauge, no unit)",
    # knative/serving activator (same docs page, section Activator)
    "kn_revision_request_concurrency": "activator kn.revision.request.concurrency ({request})",
    # knative/serving queue-proxy sidecar (same docs page, section Workload Metrics)
    "kn_serving_queue_depth": "queue-proxy kn.serving.queue.depth ({request})",
    "kn_serving_invocation_duration_seconds_bucket": "queue-proxy kn.serving.invocation.duration (Float64Histogram, s)",
    "kn_serving_invocation_duration_seconds_count": "queue-proxy kn.serving.invocation.duration",
    # knative/eventing broker filter / dispatchers (pkg/broker/filter, pkg/kncloudevents: kn.eventing.dispatch.duration)
    "kn_eventing_dispatch_duration_seconds_count": "broker filter kn.eventing.dispatch.duration (Float64Histogram, s)",
    # Kubernetes: kubelet cAdvisor (scraped by kube-prometheus-stack) and kube-state-metrics
    "container_cpu_usage_seconds_total": "kubelet/cAdvisor",
    "container_memory_working_set_bytes": "kubelet/cAdvisor",
    "kube_pod_container_status_restarts_total": "kube-state-metrics",
}


# ================================================================================================================
# A small Go text/template interpreter (the subset used by deploy/), with the Sprig/Helm/Helmfile functions we call.


class TemplateError(Exception):
    pass


_ACTION = re.compile(r"\{\{(-[ \t\r\n])?(.*?)([ \t\r\n]-)?\}\}", re.S)
_TOKEN = re.compile(
    r"""\s*(?:
      (?P<str>"(?:[^"\\]|\\.)*")
    | (?P<raw>`[^`]*`)
    | (?P<num>-?\d+(?:\.\d+)?)
    | (?P<decl>:=)
    | (?P<assign>=)
    | (?P<var>\$[A-Za-z0-9_]*(?:\.[A-Za-z0-9_]+)*)
    | (?P<field>\.(?:[A-Za-z0-9_]+(?:\.[A-Za-z0-9_]+)*)?)
    | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
    | (?P<punct>[()|,])
    )""",
    re.X | re.S,
)


class Missing(Exception):
    pass


class Node:
    def __init__(self, kind: str, **kw: Any) -> None:
        self.kind = kind
        self.__dict__.update(kw)


def _lex(text: str) -> list[tuple[str, str]]:
    """Text and action segments, with the trim markers applied."""
    out: list[tuple[str, str]] = []
    pos = 0
    trim_next = False
    for m in _ACTION.finditer(text):
        chunk = text[pos:m.start()]
        if trim_next:
            chunk = chunk.lstrip()
        if m.group(1):
            chunk = chunk.rstrip()
        out.append(("text", chunk))
        out.append(("action", m.group(2).strip()))
        trim_next = bool(m.group(3))
        pos = m.end()
    chunk = text[pos:]
    out.append(("text", chunk.lstrip() if trim_next else chunk))
    return out


def _tokens(src: str) -> list[tuple[str, str]]:
    toks, pos = [], 0
    while pos < len(src):
        if src[pos:].strip() == "":
            break
        m = _TOKEN.match(src, pos)
        if not m or m.end() == pos:
            raise TemplateError(f"cannot tokenize {src[pos:]!r} in {{{{ {src} }}}}")
        kind = m.lastgroup
        toks.append((kind, m.group(kind)))
        pos = m.end()
    return toks


def _parse(segments: list[tuple[str, str]], pos: int = 0, stop: tuple[str, ...] = ()) -> tuple[list[Node], int, str]:
    nodes: list[Node] = []
    while pos < len(segments):
        kind, value = segments[pos]
        pos += 1
        if kind == "text":
            if value:
                nodes.append(Node("text", text=value))
            continue
        if value.startswith("/*"):
            continue
        word = value.split(None, 1)[0] if value else ""
        rest = value[len(word):].strip()
        if word in ("end", "else"):
            if word not in stop and not (word == "else" and "else" in stop):
                raise TemplateError(f"unexpected {{{{ {value} }}}}")
            return nodes, pos, value
        if word in ("if", "with", "range"):
            body, pos, term = _parse(segments, pos, ("end", "else"))
            node = Node(word, pipe=rest, body=body, orelse=[])
            if term.startswith("else"):
                if term[4:].strip():
                    raise TemplateError(f"unsupported {{{{ {term} }}}}: nest an if inside the else")
                node.orelse, pos, term = _parse(segments, pos, ("end",))
            nodes.append(node)
            continue
        if word == "define":
            name = json.loads(rest)
            body, pos, _ = _parse(segments, pos, ("end",))
            nodes.append(Node("define", name=name, body=body))
            continue
        if word in ("template", "block", "break", "continue"):
            raise TemplateError(f"unsupported action {{{{ {value} }}}}")
        nodes.append(Node("action", pipe=value))
    if stop:
        raise TemplateError(f"missing {{{{ end }}}} (expected one of {stop})")
    return nodes, pos, ""


def _truthy(v: Any) -> bool:
    if v is None or v is False:
        return False
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return v != 0
    if isinstance(v, (str, list, dict, tuple)):
        return len(v) > 0
    return True


def _gostr(v: Any) -> str:
    if v is None:
        return ""  # Helm replaces "<no value>" with ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    if isinstance(v, list):
        return "[" + " ".join(_gostr(x) for x in v) + "]"
    if isinstance(v, dict):
        return "map[" + " ".join(f"{k}:{_gostr(x)}" for k, x in sorted(v.items())) + "]"
    return str(v)


def _to_yaml(v: Any) -> str:
    if v is None:
        return "null"
    return yaml.safe_dump(v, sort_keys=True, default_flow_style=False, width=10_000).rstrip("\n")


def _indent(n: int, s: str) -> str:
    pad = " " * int(n)
    return "\n".join(pad + line for line in str(s).split("\n"))


def _go_printf(fmt: str, *args: Any) -> str:
    it = iter(args)

    def sub(m: re.Match) -> str:
        if m.group(0) == "%%":
            return "%"
        v = next(it)
        return json.dumps(_gostr(v)) if m.group(1) == "q" else _gostr(v)

    return re.sub(r"%([sdvq])|%%", sub, fmt)


def _go_regex_repl(repl: str) -> str:
    repl = repl.replace("\\", "\\\\")
    return re.sub(r"\$\{(\d+)\}|\$(\d+)", lambda m: "\\g<" + (m.group(1) or m.group(2)) + ">", repl)


def _from_yaml(s: str) -> Any:
    try:
        v = yaml.safe_load(s)
    except yaml.YAMLError as exc:
        return {"Error": str(exc)}
    if v is None:
        return {}
    if not isinstance(v, dict):
        return {"Error": f"not a mapping: {type(v).__name__}"}
    return v


def _empty(v: Any) -> bool:
    return not _truthy(v)


def _set(d: dict, k: str, v: Any) -> dict:
    d[k] = v
    return d


def _required(msg: str, v: Any) -> Any:
    if v is None or v == "":
        raise TemplateError(f"required: {msg}")
    return v


class Files:
    """Helm's .Files for a chart directory: every file outside templates/ (symbolic links followed, as Helm's loader
    does), less Chart.yaml, values.yaml and what .helmignore lists."""

    def __init__(self, root: Path) -> None:
        self.root = root
        ignore = [line.strip() for line in (root / ".helmignore").read_text().splitlines()
                  if line.strip() and not line.startswith("#")] if (root / ".helmignore").is_file() else []
        found = []
        for dirpath, _, filenames in os.walk(root, followlinks=True):
            for f in filenames:
                rel = (Path(dirpath) / f).relative_to(root).as_posix()
                if rel.startswith(("templates/", "charts/")) or rel in ("Chart.yaml", "values.yaml", ".helmignore"):
                    continue
                if any(fnmatch.fnmatchcase(rel, pat) for pat in ignore):
                    continue
                found.append(rel)
        self._all = sorted(found)

    def Get(self, path: str) -> str:  # noqa: N802 (Helm's method name)
        p = self.root / path
        return p.read_text() if p.is_file() else ""

    def Glob(self, pattern: str) -> dict[str, str]:  # noqa: N802
        """`*` does not cross `/` (gobwas/glob with separator '/', as Helm)."""
        rx = re.compile("^" + "".join("[^/]*" if ch == "*" else re.escape(ch) for ch in pattern) + "$")
        return {p: self.Get(p) for p in self._all if rx.match(p)}


class Template:
    """Parse once, render with a context (dot), variables, functions and defined templates."""

    def __init__(self, text: str, name: str = "<template>") -> None:
        self.name = name
        self.nodes, _, _ = _parse(_lex(text))

    def defines(self) -> dict[str, list[Node]]:
        return {n.name: n.body for n in self.nodes if n.kind == "define"}

    def render(self, dot: Any, funcs: dict[str, Callable], defines: dict[str, list[Node]] | None = None,
               strict: bool = False) -> str:
        r = _Renderer(funcs, defines or self.defines(), strict, self.name)
        return r.run(self.nodes, dot, {"$": dot})


class _Renderer:
    def __init__(self, funcs: dict[str, Callable], defines: dict[str, list[Node]], strict: bool, name: str) -> None:
        self.funcs = dict(funcs)
        self.funcs["include"] = self._include
        self.defines = defines
        self.strict = strict
        self.name = name

    def _include(self, name: str, dot: Any) -> str:
        if name not in self.defines:
            raise TemplateError(f"no template {name!r}")
        return self.run(self.defines[name], dot, {"$": dot})

    def run(self, nodes: list[Node], dot: Any, vars_: dict[str, Any]) -> str:
        out: list[str] = []
        for n in nodes:
            if n.kind == "text":
                out.append(n.text)
            elif n.kind == "define":
                continue
            elif n.kind == "action":
                v = self.pipeline(n.pipe, dot, vars_)
                if v is not _NOOUT:
                    out.append(_gostr(v))
            elif n.kind == "if":
                if _truthy(self.pipeline(n.pipe, dot, vars_)):
                    out.append(self.run(n.body, dot, dict(vars_)))
                else:
                    out.append(self.run(n.orelse, dot, dict(vars_)))
            elif n.kind == "with":
                v = self.pipeline(n.pipe, dot, vars_)
                out.append(self.run(n.body, v, dict(vars_)) if _truthy(v) else self.run(n.orelse, dot, dict(vars_)))
            elif n.kind == "range":
                out.append(self._range(n, dot, vars_))
        return "".join(out)

    def _range(self, n: Node, dot: Any, vars_: dict[str, Any]) -> str:
        m = re.match(r"^(\$\w*)(?:\s*,\s*(\$\w*))?\s*:=\s*(.*)$", n.pipe, re.S)
        names: list[str] = []
        pipe = n.pipe
        if m:
            names = [x for x in (m.group(1), m.group(2)) if x]
            pipe = m.group(3)
        coll = self.pipeline(pipe, dot, vars_)
        items = sorted(coll.items()) if isinstance(coll, dict) else list(enumerate(coll or []))
        if not items:
            return self.run(n.orelse, dot, dict(vars_))
        out = []
        for k, v in items:
            scope = dict(vars_)
            if len(names) == 2:
                scope[names[0]], scope[names[1]] = k, v
            elif len(names) == 1:
                scope[names[0]] = v
            out.append(self.run(n.body, v, scope))
        return "".join(out)

    # -- pipelines --------------------------------------------------------------------------------------------
    def pipeline(self, src: str, dot: Any, vars_: dict[str, Any]) -> Any:
        toks = _tokens(src)
        decl = None
        if len(toks) >= 2 and toks[0][0] == "var" and toks[1][0] in ("decl", "assign"):
            decl = toks[0][1]
            toks = toks[2:]
        value = self._eval_pipe(toks, dot, vars_)
        if decl is not None:
            vars_[decl] = value
            return _NOOUT
        return value

    def _eval_pipe(self, toks: list[tuple[str, str]], dot: Any, vars_: dict[str, Any]) -> Any:
        cmds: list[list] = [[]]
        depth = 0
        for t in toks:
            if t == ("punct", "(") :
                depth += 1
            elif t == ("punct", ")"):
                depth -= 1
            if t == ("punct", "|") and depth == 0:
                cmds.append([])
            else:
                cmds[-1].append(t)
        value: Any = _NOARG
        for cmd in cmds:
            value = self._eval_cmd(cmd, dot, vars_, value)
        return value

    def _operands(self, toks: list[tuple[str, str]]) -> list[list[tuple[str, str]]]:
        ops, i = [], 0
        while i < len(toks):
            if toks[i] == ("punct", "("):
                depth, j = 0, i
                while True:
                    if toks[j] == ("punct", "("):
                        depth += 1
                    elif toks[j] == ("punct", ")"):
                        depth -= 1
                        if depth == 0:
                            break
                    j += 1
                ops.append(toks[i:j + 1])
                i = j + 1
            else:
                ops.append([toks[i]])
                i += 1
        return ops

    def _eval_cmd(self, cmd: list[tuple[str, str]], dot: Any, vars_: dict[str, Any], piped: Any) -> Any:
        if not cmd:
            raise TemplateError("empty command")
        ops = self._operands(cmd)
        head = ops[0]
        args = [self._operand(o, dot, vars_) for o in ops[1:]]
        if piped is not _NOARG:
            args.append(piped)
        if len(head) == 1 and head[0][0] == "ident" and head[0][1] not in ("true", "false", "nil"):
            name = head[0][1]
            if name not in self.funcs:
                raise TemplateError(f"function {name!r} not defined (in {self.name})")
            if name == "include":
                return self._include(*args)
            return self.funcs[name](*args)
        value = self._operand(head, dot, vars_)
        if callable(value):
            return value(*args)
        if args:
            raise TemplateError(f"cannot give arguments to a non-function value ({cmd})")
        return value

    def _operand(self, op: list[tuple[str, str]], dot: Any, vars_: dict[str, Any]) -> Any:
        if op[0] == ("punct", "("):
            return self._eval_pipe(op[1:-1], dot, vars_)
        kind, text = op[0]
        if kind == "str":
            return json.loads(text)
        if kind == "raw":
            return text[1:-1]
        if kind == "num":
            return float(text) if "." in text else int(text)
        if kind == "ident":
            if text in ("true", "false"):
                return text == "true"
            if text == "nil":
                return None
            if text in self.funcs:
                return self.funcs[text]()
            raise TemplateError(f"function {text!r} not defined")
        if kind == "field":
            return self._walk(dot, text[1:].split(".") if text != "." else [])
        if kind == "var":
            name, *path = text.split(".")
            if name not in vars_:
                raise TemplateError(f"undefined variable {name}")
            return self._walk(vars_[name], path)
        raise TemplateError(f"unexpected token {text!r}")

    def _walk(self, value: Any, path: list[str]) -> Any:
        for i, key in enumerate(path):
            if isinstance(value, dict):
                if key not in value:
                    if self.strict:
                        raise Missing(f"map has no entry for key {'.'.join(path[:i + 1])!r} (in {self.name})")
                    value = None
                    continue
                value = value[key]
            elif value is None:
                if self.strict:
                    raise Missing(f"nil pointer evaluating .{'.'.join(path[:i + 1])} (in {self.name})")
                return None
            else:
                value = getattr(value, key)
        return value


_NOOUT = object()
_NOARG = object()


def _eq(a: Any, *bs: Any) -> bool:
    return any(a == b for b in bs)


def _default(d: Any, v: Any = None) -> Any:
    return v if _truthy(v) else d


def sprig_funcs() -> dict[str, Callable]:
    return {
        "quote": lambda *v: " ".join(json.dumps(_gostr(x)) for x in v),
        "squote": lambda *v: " ".join("'" + _gostr(x) + "'" for x in v),
        "toYaml": _to_yaml,
        "toJson": lambda v: json.dumps(v, sort_keys=True, separators=(",", ":")),
        "fromYaml": _from_yaml,
        "indent": _indent,
        "nindent": lambda n, s: "\n" + _indent(n, s),
        "default": _default,
        "empty": _empty,
        "required": _required,
        "eq": _eq,
        "ne": lambda a, b: a != b,
        "lt": lambda a, b: a < b,
        "gt": lambda a, b: a > b,
        "and": lambda *a: next((x for x in a if not _truthy(x)), a[-1]),
        "or": lambda *a: next((x for x in a if _truthy(x)), a[-1]),
        "not": lambda v: not _truthy(v),
        "list": lambda *a: list(a),
        "dict": lambda *a: {a[i]: a[i + 1] for i in range(0, len(a), 2)},
        "has": lambda needle, lst: needle in (lst or []),
        "set": _set,
        "len": lambda v: len(v or []),
        "replace": lambda old, new, s: _gostr(s).replace(old, new),
        "printf": _go_printf,
        "lower": lambda s: _gostr(s).lower(),
        "upper": lambda s: _gostr(s).upper(),
        "trim": lambda s: _gostr(s).strip(),
        "trimSuffix": lambda suf, s: s[: -len(suf)] if suf and s.endswith(suf) else s,
        "trimPrefix": lambda pre, s: s[len(pre):] if pre and s.startswith(pre) else s,
        "base": posixpath.basename,
        "splitList": lambda sep, s: _gostr(s).split(sep),
        "first": lambda lst: lst[0] if lst else None,
        "last": lambda lst: lst[-1] if lst else None,
        "regexSplit": lambda pat, s, n: re.split(pat, s) if n < 0 else re.split(pat, s, maxsplit=max(n - 1, 0)),
        "regexReplaceAll": lambda pat, s, repl: re.sub(pat, _go_regex_repl(repl), s),
        "toString": _gostr,
    }


def helmfile_funcs(env: dict[str, str]) -> dict[str, Callable]:
    funcs = sprig_funcs()

    def required_env(name: str) -> str:
        if not env.get(name):
            raise TemplateError(f"required env var `{name}` is not set")
        return env[name]

    funcs["env"] = lambda name: env.get(name, "")
    funcs["requiredEnv"] = required_env
    return funcs


# ================================================================================================================
# Loading helmfile.yaml, environments, values, charts


def _yaml_docs(text: str) -> list[Any]:
    return [d for d in yaml.safe_load_all(text) if d is not None]


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


def fake_env(env_name: str, markers: bool = False) -> dict[str, str]:
    """The process environment helmfile would see. markers=True: every variable reads as <env:NAME>."""
    if markers:
        return _MarkerEnv()
    return dict(PROD_ENV) if env_name == "prod" else {}


class _MarkerEnv(dict):
    def get(self, key: str, default: Any = None) -> str:  # type: ignore[override]
        return f"<env:{key}>"

    def __getitem__(self, key: str) -> str:
        return f"<env:{key}>"


def render_helmfile_values(path: Path, env_name: str, values: dict, markers: bool = False) -> Any:
    text = path.read_text()
    if path.name.endswith(".gotmpl"):
        ctx = {"Values": values, "Environment": {"Name": env_name, "Values": values}, "StateValues": values}
        text = Template(text, path.name).render(ctx, helmfile_funcs(fake_env(env_name, markers)), strict=True)
    return yaml.safe_load(text)


@functools.lru_cache(maxsize=None)
def env_values(env_name: str, markers: bool = False) -> dict:
    merged: dict = {}
    for f in helmfile()["environments"][env_name]["values"]:
        merged = deep_merge(merged, render_helmfile_values(ROOT / f, env_name, {}, markers) or {})
    return merged


def deep_merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in (over or {}).items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


@functools.lru_cache(maxsize=None)
def release_values(rid: str, env_name: str, markers: bool = False) -> dict:
    rel = release(rid)
    merged: dict = {}
    for f in rel.get("values", []):
        assert isinstance(f, str), f"{rid}: inline values are not allowed, use deploy/values/<release>.yaml[.gotmpl]"
        merged = deep_merge(merged, render_helmfile_values(ROOT / f, env_name, env_values(env_name, markers), markers) or {})
    return merged


class _Obj:
    def __init__(self, **kw: Any) -> None:
        self.__dict__.update(kw)


@functools.lru_cache(maxsize=None)
def render_chart(rid: str, env_name: str) -> tuple[dict, ...]:
    """Render a local chart as `helm template` would, with the release's values for env_name: its documents."""
    rel = release(rid)
    chart_dir = ROOT / rel["chart"]
    chart = yaml.safe_load((chart_dir / "Chart.yaml").read_text())
    values = deep_merge(yaml.safe_load((chart_dir / "values.yaml").read_text()) or {}, release_values(rid, env_name))
    ctx = {
        "Values": values,
        "Release": _Obj(Name=rel["name"], Namespace=rel["namespace"], Service="Helm", IsInstall=True, IsUpgrade=False),
        "Chart": _Obj(Name=chart["name"], Version=chart["version"], AppVersion=chart.get("appVersion")),
        "Files": Files(chart_dir),
        "Capabilities": _Obj(KubeVersion=_Obj(Version="v1.33.0")),
    }
    templates = {p: Template(p.read_text(), f"{chart_dir.name}/{p.name}") for p in sorted((chart_dir / "templates").glob("*"))
                 if p.suffix in (".yaml", ".yml", ".tpl", ".txt")}
    defines: dict[str, list[Node]] = {}
    for t in templates.values():
        defines.update(t.defines())
    docs: list[dict] = []
    for path, t in templates.items():
        if path.name.startswith("_") or path.suffix == ".txt":
            continue
        text = t.render(ctx, sprig_funcs(), defines)
        for doc in re.split(r"(?m)^---[ \t]*$", text):
            try:
                obj = yaml.safe_load(doc)
            except yaml.YAMLError as exc:
                raise AssertionError(f"{chart_dir.name}/templates/{path.name} renders invalid YAML: {exc}\n{doc}") from exc
            if obj is not None:
                assert isinstance(obj, dict), f"{path}: rendered a non-object: {obj!r}"
                if obj.get("kind") not in CLUSTER_SCOPED:
                    obj.setdefault("metadata", {}).setdefault("namespace", rel["namespace"])
                docs.append(obj)
    return tuple(docs)


CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition", "StorageClass",
                  "PersistentVolume", "PriorityClass", "MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"}


def local_releases() -> list[dict]:
    return [r for r in releases() if is_local(r)]


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
# The interpreter itself can fail


def test_template_interpreter_renders_and_fails_like_go_templates():
    funcs = helmfile_funcs({"X": "1"})
    t = Template('a: {{ .Values.a | quote }}\n{{- if .Values.b }}\nb: {{ .Values.b }}\n{{- end }}\nx: {{ requiredEnv "X" }}\n')
    assert yaml.safe_load(t.render({"Values": {"a": 5, "b": ""}}, funcs, strict=True)) == {"a": "5", "x": 1}
    with pytest.raises(Missing):
        Template("{{ .Values.nope }}").render({"Values": {}}, funcs, strict=True)
    with pytest.raises(TemplateError):
        Template('{{ requiredEnv "UNSET" }}').render({}, funcs)
    with pytest.raises(TemplateError):
        Template("{{ frobnicate 1 }}").render({}, funcs)
    with pytest.raises(TemplateError):
        Template("{{ if true }}never closed")
    out = Template('{{- range $i, $x := list "a" "b" }}{{ if $i }},{{ end }}{{ $x | upper }}{{ end }}').render({}, funcs)
    assert out == "A,B"
    assert Template('{{ regexReplaceAll "^k/([^:]+):.*$" "k/img:1" (printf "%s/${1}:%s" "r" "2") }}').render({}, funcs) == "r/img:2"


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
# Values: render for every environment


@pytest.mark.parametrize("env_name", ENVIRONMENTS)
def test_environment_values_render(env_name):
    values = env_values(env_name)
    for key in ("images", "knative", "s3", "postgres", "nessie", "starrocks", "monitoring"):
        assert key in values, f"{env_name}: environment values lack {key!r}"


def test_prod_environment_requires_its_site_settings():
    """Without ATEDA_IMAGE_REGISTRY / ATEDA_DOMAIN exported, `helmfile -e prod` stops (requiredEnv)."""
    text = (DEPLOY / "env" / "prod.yaml.gotmpl").read_text()
    with pytest.raises(TemplateError, match="ATEDA_IMAGE_REGISTRY|ATEDA_DOMAIN"):
        Template(text).render({"Values": {}}, helmfile_funcs({}), strict=True)
    assert env_values("prod")["images"]["registry"] == PROD_ENV["ATEDA_IMAGE_REGISTRY"]


@pytest.mark.parametrize("env_name", ENVIRONMENTS)
@pytest.mark.parametrize("rid", [release_id(r) for r in releases()])
def test_release_values_render_for_every_environment(rid, env_name):
    """Every .Values key a values template reads exists in the environment (strict), and the result is a mapping."""
    values = release_values(rid, env_name)
    assert isinstance(values, dict), f"{rid} ({env_name}): values are not a mapping"


@pytest.mark.parametrize("env_name", ENVIRONMENTS)
@pytest.mark.parametrize("rid", [release_id(r) for r in local_releases()])
def test_local_charts_render_to_valid_kubernetes_objects(rid, env_name):
    import kubernetes_validate  # test extra

    docs = render_chart(rid, env_name)
    assert docs, f"{rid} renders nothing"
    seen = set()
    for doc in docs:
        for key in ("apiVersion", "kind", "metadata"):
            assert key in doc, f"{rid}: rendered object without {key}: {doc}"
        ident = (doc["apiVersion"], doc["kind"], doc["metadata"].get("namespace"), doc["metadata"]["name"])
        assert ident not in seen, f"{rid}: duplicate object {ident}"
        seen.add(ident)
        if is_core(doc):
            try:
                kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
            except kubernetes_validate.ValidationError as exc:
                pytest.fail(f"{rid} ({env_name}) {doc['kind']}/{doc['metadata']['name']}: "
                            f"{'/'.join(map(str, exc.path))}: {exc.message}")


def test_chart_render_catches_broken_templates(tmp_path):
    chart = tmp_path / "c"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text("apiVersion: v2\nname: c\nversion: 0.1.0\n")
    (chart / "values.yaml").write_text("a: 1\n")
    (chart / "templates" / "x.yaml").write_text("kind: ConfigMap\n{{ .Values.a | nosuchfunc }}\n")
    t = Template((chart / "templates" / "x.yaml").read_text())
    with pytest.raises(TemplateError):
        t.render({"Values": {"a": 1}}, sprig_funcs())


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
        if doc["kind"] == "Cluster":  # CloudNativePG bootstrap owner credentials (basic-auth)
            name = doc["spec"]["bootstrap"]["initdb"]["secret"]["name"]
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
# The image


def _dockerfile_stages() -> list[list[tuple[str, str]]]:
    lines, buf = [], ""
    for raw in DOCKERFILE.read_text().splitlines():
        if raw.strip().startswith("#") and not buf:
            continue
        buf += raw.rstrip("\\").strip() + " " if raw.rstrip().endswith("\\") else raw.strip()
        if not raw.rstrip().endswith("\\"):
            if buf.strip():
                lines.append(buf.strip())
            buf = ""
    stages: list[list[tuple[str, str]]] = []
    for line in lines:
        instr, _, rest = line.partition(" ")
        if instr.upper() == "FROM":
            stages.append([])
        stages[-1].append((instr.upper(), rest.strip()))
    return stages


def test_dockerfile_pins_its_base_image_and_runs_as_non_root():
    stages = _dockerfile_stages()
    assert stages, "no FROM in docker/Dockerfile"
    names = set()
    for stage in stages:
        base = stage[0][1].split()[0]
        if base in names:
            continue
        m = re.match(r"^python:(\d+\.\d+\.\d+)-slim-(\w+)$", base)
        assert m, f"base image {base!r} must be pinned like python:3.11.x-slim-bookworm"
        as_ = re.search(r"\bAS\s+(\S+)", stage[0][1], re.I)
        if as_:
            names.add(as_.group(1))
    final = stages[-1]
    users = [rest for instr, rest in final if instr == "USER"]
    assert users, "the final stage sets no USER"
    assert users[-1].split(":")[0] not in ("root", "0"), f"runs as {users[-1]}"
    text = DOCKERFILE.read_text()
    assert re.search(r"^EXPOSE .*\b8080\b", text, re.M)
    assert re.search(r'^CMD \["functions-framework"', text, re.M)
    assert "FUNCTION_TARGET=handle" in text and "FUNCTION_SOURCE=/app/functions/${FUNCTION_NAME}/main.py" in text
    assert re.search(r'^RUN pip install "\.\$\{ATEDA_EXTRAS:\+\[\$ATEDA_EXTRAS\]\}"$', text, re.M), \
        "the shared package is installed with the function's extras only"


def test_image_build_matrix_matches_the_knative_services():
    script = IMAGES_SCRIPT.read_text()
    specs = dict((name, (folder, sig))
                 for name, folder, sig, _ in re.findall(r'"([\w-]+):(\w+):(http|cloudevent):([\w,]*)"', script))
    assert set(specs) == set(FUNCTIONS), specs
    for name, (folder, signature) in specs.items():
        assert folder == FUNCTIONS[name] and (ROOT / "functions" / folder / "main.py").is_file()
        svc = knative_services()[f"ateda-{name}"]
        image = svc["spec"]["template"]["spec"]["containers"][0]["image"]
        assert image == f"kind.local/ateda-{name}:0.1.0"
        assert function_env(f"ateda-{name}")["FUNCTION_SIGNATURE_TYPE"]["value"] == signature
    assert "docker/Dockerfile" in script and "kind load docker-image" in script


def test_dockerignore_keeps_the_build_context_to_what_the_image_needs():
    rules = [r.strip() for r in DOCKERIGNORE.read_text().splitlines() if r.strip() and not r.startswith("#")]
    assert rules[0] == "**", "start from an empty context, then re-include"
    for needed in ("pyproject.toml", "shared/", "functions/"):
        assert f"!{needed}" in rules, f".dockerignore must re-include {needed}"
    assert not any(r.startswith("!") and (".venv" in r or ".git" in r or ".ateda" in r) for r in rules)


# ================================================================================================================
# Dashboards


def dashboards() -> dict[str, dict]:
    return {p.name: json.loads(p.read_text()) for p in sorted(DASHBOARDS.glob("*.json"))}


def panels(board: dict) -> Iterator[dict]:
    for p in board.get("panels", []):
        yield p
        yield from p.get("panels", [])


GRAFANA_VARS = re.compile(r"\$__(rate_interval|interval|range)|\$\{__(rate_interval|interval|range)\}")


def promql_of(expr: str) -> str:
    """Grafana's variables replaced by what Grafana would put there, so the text is plain PromQL."""
    expr = GRAFANA_VARS.sub("5m", expr)
    return re.sub(r"\$\{?(\w+)\}?", "x", expr)


def metric_names(expr: str) -> set[str]:
    import promql_parser  # test extra: promql-parser

    names: set[str] = set()

    def visit(node):  # noqa: ANN001, ANN202
        if isinstance(node, promql_parser.VectorSelector) and node.name:
            names.add(node.name)

    promql_parser.walk(promql_parser.parse(promql_of(expr)), visit)
    return names


@functools.lru_cache(maxsize=None)
def exported_metrics() -> frozenset[str]:
    """Sample names shared/ateda/serving/metrics.py exports, read from the prometheus_client registry after creating them."""
    from prometheus_client import REGISTRY

    from ateda.serving.metrics import instruments

    instruments()
    suffixes = {"counter": ("_total",), "gauge": ("",), "histogram": ("_bucket", "_sum", "_count"),
                "summary": ("", "_sum", "_count")}
    names = set()
    for family in REGISTRY.collect():
        if family.name.startswith("ateda_"):
            names |= {family.name + s for s in suffixes[family.type]}
    return frozenset(names)


def dashboard_queries() -> Iterator[tuple[str, str, str]]:
    for fname, board in dashboards().items():
        for p in panels(board):
            for t in p.get("targets", []):
                if t.get("expr"):
                    yield fname, p.get("title", "?"), t["expr"]
        for var in board.get("templating", {}).get("list", []):
            q = var.get("query")
            q = q.get("query") if isinstance(q, dict) else q
            if var.get("type") == "query" and q:
                m = re.match(r"^label_values\((.*),\s*\w+\)$", q.strip(), re.S)
                yield fname, f"variable {var['name']}", m.group(1) if m else q


def test_dashboards_are_valid_grafana_json():
    boards = dashboards()
    assert {"autoscaling.json", "pipeline.json", "errors.json", "lake.json"} <= set(boards)
    uids = [b["uid"] for b in boards.values()]
    assert len(uids) == len(set(uids)), "dashboard uids must be unique"
    for fname, board in boards.items():
        assert board.get("title") and board.get("panels"), fname
        ids = [p["id"] for p in panels(board)]
        assert len(ids) == len(set(ids)), f"{fname}: duplicate panel ids"
        for p in panels(board):
            if p["type"] == "row":
                continue
            assert p.get("targets"), f"{fname}: panel {p.get('title')!r} has no query"
            assert p.get("datasource", {}).get("uid") == "${datasource}", f"{fname}: {p.get('title')}: datasource"
            g = p["gridPos"]
            assert 0 <= g["x"] and g["x"] + g["w"] <= 24, f"{fname}: {p['title']} outside the grid"


def test_every_dashboard_query_parses_as_promql():
    queries = list(dashboard_queries())
    assert len(queries) >= 30
    failures = []
    for fname, title, expr in queries:
        try:
            metric_names(expr)
        except Exception as exc:  # noqa: BLE001 (promql-parser raises ValueError)
            failures.append(f"{fname}: {title}: {exc}: {expr}")
    assert not failures, "\n".join(failures)


def test_every_dashboard_metric_is_exported_by_the_code_or_knative_or_kubernetes():
    known = exported_metrics() | set(METRIC_ALLOWLIST)
    unknown = [f"{fname}: {title}: {name}" for fname, title, expr in dashboard_queries()
               for name in sorted(metric_names(expr)) if name not in known]
    assert not unknown, "metrics nobody exports:\n" + "\n".join(unknown)


def test_dashboards_cover_the_issue():
    used = {name for _, _, expr in dashboard_queries() for name in metric_names(expr)}
    by_board = {f: {n for ff, _, e in dashboard_queries() if ff == f for n in metric_names(e)} for f in dashboards()}
    assert {"kn_revision_pods_desired", "kn_revision_pods_count", "kn_revision_concurrency_stable",
            "kn_serving_invocation_duration_seconds_bucket"} <= by_board["autoscaling.json"]
    assert {"ateda_alerts_processed_total", "ateda_end_to_end_lag_seconds_bucket", "ateda_stage_seconds_bucket"} \
        <= by_board["pipeline.json"]
    assert {"ateda_rejected_total", "ateda_dead_letters_total", "ateda_broker_deliveries_total"} <= by_board["errors.json"]
    assert {"ateda_iceberg_commits_total", "ateda_iceberg_rows_committed_total", "ateda_commit_batch_alerts_bucket"} \
        <= by_board["lake.json"]
    stale = set(METRIC_ALLOWLIST) - used
    assert not stale, f"allow-listed but unused (remove them): {sorted(stale)}"


def test_metric_checks_can_fail():
    with pytest.raises(Exception):  # noqa: B017
        metric_names("sum(rate(ateda_alerts_processed_total[5m])")  # unbalanced
    assert metric_names('sum by (f) (rate(nope_total{a="$x"}[$__rate_interval])) / on() group_left b') == {"nope_total", "b"}
    assert "nope_total" not in exported_metrics() | set(METRIC_ALLOWLIST)
    assert "ateda_alerts_processed_total" in exported_metrics()
    assert "ateda_end_to_end_lag_seconds_bucket" in exported_metrics()


# ================================================================================================================
# Tasks and docs


def test_taskfile_has_the_deploy_tasks_with_descriptions():
    tasks = yaml.safe_load(TASKFILE.read_text())["tasks"]
    for name in ("test", "demo", "up", "bench", "kind:up", "kind:down", "images", "images:build", "images:load",
                 "deploy", "down"):
        assert name in tasks, f"task {name} missing"
        assert tasks[name].get("desc"), f"task {name} has no desc"
    deploy = json.dumps(tasks["deploy"])
    for step in ("kind:up", "images", "secrets.sh", "helmfile -e kind sync", "deploy:smoke"):
        assert step in deploy, f"`task deploy` does not run {step}"
    assert tasks["kind:up"].get("status"), "kind:up should be skipped when the cluster exists"
    smoke = SMOKE_SCRIPT.read_text()
    assert "../shared/data/ztf/alerts/" in smoke and "s3 cp" in smoke and "ateda status --json" in smoke
    assert (ROOT / smoke.split("ATEDA_SMOKE_ALERT:-", 1)[1].split("}", 1)[0]).is_file(), "the smoke test's sample alert"


def test_deploy_doc_covers_the_essentials():
    doc = (ROOT / "docs" / "deploy.md").read_text()
    for needle in ("task deploy", "helmfile", "secrets.sh", "aws --endpoint-url", "Grafana", "prod",
                   "ATEDA_IMAGE_REGISTRY", "ATEDA_DOMAIN", "task down"):
        assert needle in doc, f"docs/deploy.md does not mention {needle!r}"
