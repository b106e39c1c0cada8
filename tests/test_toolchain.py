"""The toolchain users run, run for real: `task` (its list and dry runs), hadolint, shellcheck, yamllint, actionlint.

The tools come from scripts/tools.sh (pinned, into .tools/bin). Without them these tests fail; ATEDA_ALLOW_NO_TOOLS=1
turns that into a skip for a machine that cannot install them. Also here: what the linters cannot see in the image
(the base image pinned like python:3.11.x-slim-bookworm, a non-root final USER, the functions-framework entry point,
one image per Knative Service) and in the Taskfile.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
TOOLS_BIN = ROOT / ".tools" / "bin"
DOCKERFILE = ROOT / "docker" / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
TASKFILE = ROOT / "Taskfile.yml"
IMAGES_SCRIPT = ROOT / "deploy" / "scripts" / "images.sh"
SMOKE_SCRIPT = ROOT / "deploy" / "scripts" / "smoke.sh"
WORKFLOWS = ROOT / ".github" / "workflows"
DEPLOY_DOC = ROOT / "docs" / "deploy.md"
TIMEOUT = 120  # seconds for one tool run (they take well under one)

# Knative Service -> functions/ folder, as in knative/2*-svc-*.yaml.
FUNCTIONS = {"minio-bridge": "minio_bridge", "split": "split", "bronze": "bronze", "dead-letter": "dead_letter",
             "dbt-refresh": "dbt_refresh", "crossmatch": "crossmatch", "maintenance": "maintenance"}

# What docs/deploy.md says each task runs, in order: `task --dry <task>` must print these commands in this order.
DOCUMENTED_TASKS = {
    "deploy": ["kind create cluster --config kind/cluster.yaml", "deploy/scripts/images.sh build",
               "deploy/scripts/images.sh load", "deploy/scripts/secrets.sh kind", "helmfile -e kind sync",
               "deploy/scripts/smoke.sh"],
    "images": ["deploy/scripts/images.sh build", "deploy/scripts/images.sh load"],
    "down": ["kind delete cluster --name ateda"],
}

def params(names: list[str]) -> list:
    return [pytest.param(n) for n in names]


SHELL_SCRIPTS = sorted(p.relative_to(ROOT).as_posix() for p in [*ROOT.glob("scripts/*.sh"),
                                                                 *ROOT.glob("deploy/scripts/*.sh")])
YAML_TARGETS = {"knative": ["knative"], "kind": ["kind"], "helmfile.yaml": ["helmfile.yaml"], ".github": [".github"],
                "deploy": ["deploy/env/kind.yaml", *sorted(p.relative_to(ROOT).as_posix() for p in [
                    *ROOT.glob("deploy/values/*.yaml"), *ROOT.glob("deploy/charts/*/Chart.yaml"),
                    *ROOT.glob("deploy/charts/*/values.yaml")])],
                "deploy/superset": ["deploy/superset"]}  # Superset's dashboards as code


def tool(name: str) -> str:
    """The path of a tool; a missing tool fails the test (skips it only with ATEDA_ALLOW_NO_TOOLS=1)."""
    local = TOOLS_BIN / name
    path = str(local) if os.access(local, os.X_OK) else shutil.which(name)
    if path:
        return path
    message = f"{name} is not installed: run scripts/tools.sh (it installs into .tools/bin)"
    if os.environ.get("ATEDA_ALLOW_NO_TOOLS") == "1":
        pytest.skip(message)
    pytest.fail(message)


def run(name: str, *args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    env = {**os.environ, "NO_COLOR": "1"}
    return subprocess.run([tool(name), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=TIMEOUT)


def output(proc: subprocess.CompletedProcess) -> str:
    return proc.stdout + proc.stderr


# ================================================================================================================
# task


def test_task_list_shows_every_task_with_its_description():
    proc = run("task", "--list")
    assert proc.returncode == 0, output(proc)
    listed = dict(re.findall(r"^\* ([\w:-]+):\s+(.+)$", proc.stdout, re.M))
    tasks = yaml.safe_load(TASKFILE.read_text())["tasks"]
    for name in ("test", "demo", "up", "bench", "kind:up", "kind:down", "images", "images:build", "images:load",
                 "deploy", "deploy:smoke", "down"):
        assert name in tasks and listed.get(name) == tasks[name]["desc"], f"task {name} missing or without desc"


def dry_run_commands(task: str) -> list[str]:
    proc = run("task", "--dry", task)
    assert proc.returncode == 0, f"`task --dry {task}` failed:\n{output(proc)}"
    return [m.strip() for m in re.findall(r"^task: \[[\w:-]+\] (.+)$", output(proc), re.M)]


@pytest.mark.parametrize("task", sorted(DOCUMENTED_TASKS))
def test_task_dry_run_prints_the_commands_the_deploy_doc_shows(task):
    doc = DEPLOY_DOC.read_text()
    commands = dry_run_commands(task)
    pos = 0
    for expected in DOCUMENTED_TASKS[task]:
        assert f"`{expected}" in doc, f"docs/deploy.md does not show `{expected}`"
        hit = next((i for i, c in enumerate(commands[pos:], pos) if c.startswith(expected) or f" {expected}" in c), None)
        assert hit is not None, f"`task --dry {task}` does not run `{expected}` (after {commands[:pos]}): {commands}"
        pos = hit + 1


def test_taskfile_deploy_skips_an_existing_cluster_and_smokes_a_real_alert():
    tasks = yaml.safe_load(TASKFILE.read_text())["tasks"]
    deploy = str(tasks["deploy"]["cmds"])
    for step in ("kind:up", "images", "secrets.sh", "helmfile -e kind sync", "deploy:smoke"):
        assert step in deploy, f"`task deploy` does not run {step}"
    assert tasks["kind:up"].get("status"), "kind:up should be skipped when the cluster exists"
    smoke = SMOKE_SCRIPT.read_text()
    assert "../shared/data/ztf/alerts/" in smoke and "s3 cp" in smoke and "ateda status --json" in smoke
    assert (ROOT / smoke.split("ATEDA_SMOKE_ALERT:-", 1)[1].split("}", 1)[0]).is_file(), "the smoke test's sample alert"


# ================================================================================================================
# Linters


def test_hadolint_passes_on_the_dockerfile():
    proc = run("hadolint", "--no-color", str(DOCKERFILE.relative_to(ROOT)))
    assert proc.returncode == 0, output(proc)


@pytest.mark.parametrize("script", params(SHELL_SCRIPTS))
def test_shellcheck_passes(script):
    proc = run("shellcheck", "--color=never", script)
    assert proc.returncode == 0, output(proc)


@pytest.mark.parametrize("target", params(sorted(YAML_TARGETS)))
def test_yamllint_passes(target):
    proc = run("yamllint", "--strict", "-c", ".yamllint.yaml", "-f", "parsable", *YAML_TARGETS[target])
    assert proc.returncode == 0, output(proc)


def test_actionlint_passes_on_the_workflows():
    workflows = sorted(str(p.relative_to(ROOT)) for p in WORKFLOWS.glob("*.yml"))
    assert {".github/workflows/ci.yml", ".github/workflows/images.yml"} <= set(workflows)
    # shellcheck checks the run: scripts too; pyflakes is not installed (no Python in run: blocks).
    proc = run("actionlint", "-no-color", "-shellcheck", tool("shellcheck"), "-pyflakes=", *workflows)
    assert proc.returncode == 0, output(proc)


def test_a_missing_tool_fails_the_test_unless_allowed(monkeypatch):
    monkeypatch.delenv("ATEDA_ALLOW_NO_TOOLS", raising=False)
    with pytest.raises(pytest.fail.Exception, match="scripts/tools.sh"):
        tool("no-such-tool-ateda")
    monkeypatch.setenv("ATEDA_ALLOW_NO_TOOLS", "1")
    with pytest.raises(pytest.skip.Exception):
        tool("no-such-tool-ateda")


def test_linters_can_fail(tmp_path):
    (tmp_path / "Dockerfile").write_text("FROM python\nUSER root\nRUN pip install requests\n")
    assert run("hadolint", "--no-color", "Dockerfile", cwd=tmp_path).returncode != 0
    (tmp_path / "x.sh").write_text("#!/bin/bash\nrm -rf $1/*\n")
    assert run("shellcheck", "x.sh", cwd=tmp_path).returncode != 0
    (tmp_path / "x.yaml").write_text("a: 1\na: 2\n")
    assert run("yamllint", "--strict", "-c", str(ROOT / ".yamllint.yaml"), "x.yaml", cwd=tmp_path).returncode != 0
    (tmp_path / "w.yml").write_text("on: push\njobs:\n  a:\n    runs-on: ubuntu-24.04\n    steps:\n"
                                    "      - run: echo ${{ github.nope }}\n")
    assert run("actionlint", "-no-color", "-pyflakes=", "w.yml", cwd=tmp_path).returncode != 0
    assert run("task", "--dry", "no-such-task").returncode != 0


# ================================================================================================================
# The workflows: the README's test command, fast tier first; images built on push, pushed on a tag


def workflow(name: str) -> dict:
    return yaml.safe_load((WORKFLOWS / name).read_text())


def run_steps(wf: dict, job: str) -> list[str]:
    return [s["run"] for s in wf["jobs"][job]["steps"] if "run" in s]


def test_ci_workflow_runs_the_readme_test_command_fast_tier_first():
    wf = workflow("ci.yml")
    assert set(wf[True if True in wf else "on"]) >= {"push", "pull_request"}  # PyYAML reads `on` as True
    assert "bash scripts/test.sh" in (ROOT / "README.md").read_text()
    fast, full = run_steps(wf, "fast"), run_steps(wf, "full")
    assert any(re.search(r'bash scripts/test\.sh -m "not slow"', r) for r in fast), fast
    assert any(r.strip().endswith("bash scripts/test.sh") for r in full), full
    assert wf["jobs"]["full"]["needs"] == "fast"
    for job in ("fast", "full"):
        assert wf["jobs"][job]["services"]["postgres"]["env"]["POSTGRES_HOST_AUTH_METHOD"] == "trust"


def test_images_workflow_builds_every_function_and_pushes_only_on_a_tag():
    wf = workflow("images.yml")
    on = wf[True if True in wf else "on"]
    assert "tags" in on["push"], on
    steps = wf["jobs"]["images"]["steps"]
    build = next(s for s in steps if "images.sh build" in s.get("run", ""))
    push = next(s for s in steps if "images.sh push" in s.get("run", ""))
    assert "startsWith(github.ref, 'refs/tags/')" in push["if"] and "if" not in build
    assert re.search(r'tag="\$GITHUB_REF_NAME"', build["run"]) and "GITHUB_ENV" in build["run"], \
        "the tag is the image version, for the build and the push"


# ================================================================================================================
# What the linters cannot see: the image


def _dockerfile_instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    return [(m.group(1).upper(), m.group(2).strip()) for m in re.finditer(r"^\s*([A-Za-z]+)\s+(.*)$", text, re.M)
            if not m.group(0).lstrip().startswith("#")]


def test_dockerfile_pins_its_base_image_and_runs_as_non_root():
    instructions = _dockerfile_instructions()
    stages = [i for i, (instr, _) in enumerate(instructions) if instr == "FROM"]
    assert stages, "no FROM in docker/Dockerfile"
    names = set()
    for i in stages:
        base, *rest = instructions[i][1].split()
        if base not in names:
            assert re.match(r"^python:\d+\.\d+\.\d+-slim-\w+$", base), f"base image {base!r}: pin like python:3.11.x-slim-bookworm"
        if len(rest) == 2 and rest[0].upper() == "AS":
            names.add(rest[1])
    users = [rest for instr, rest in instructions[stages[-1]:] if instr == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0"), f"the final stage runs as {users or 'root'}"
    text = DOCKERFILE.read_text()
    assert re.search(r"^EXPOSE .*\b8080\b", text, re.M)
    assert re.search(r'^CMD \["functions-framework"', text, re.M)
    assert "FUNCTION_TARGET=handle" in text and "FUNCTION_SOURCE=/app/functions/${FUNCTION_NAME}/main.py" in text
    assert re.search(r'^RUN pip install "\.\$\{ATEDA_EXTRAS:\+\[\$ATEDA_EXTRAS\]\}"$', text, re.M), \
        "the shared package is installed with the function's extras only"


def test_image_build_matrix_matches_the_knative_services():
    services = {d["metadata"]["name"]: d for p in sorted((ROOT / "knative").glob("*.yaml"))
                for d in yaml.safe_load_all(p.read_text()) if d and d["kind"] == "Service"}
    script = IMAGES_SCRIPT.read_text()
    specs = {name: (folder, sig) for name, folder, sig, _ in re.findall(r'"([\w-]+):(\w+):(http|cloudevent):([\w,]*)"', script)}
    assert set(specs) == set(FUNCTIONS), specs
    for name, (folder, signature) in specs.items():
        assert folder == FUNCTIONS[name] and (ROOT / "functions" / folder / "main.py").is_file()
        container = services[f"ateda-{name}"]["spec"]["template"]["spec"]["containers"][0]
        assert container["image"] == f"kind.local/ateda-{name}:0.1.0"
        assert {e["name"]: e.get("value") for e in container["env"]}["FUNCTION_SIGNATURE_TYPE"] == signature
    assert "docker/Dockerfile" in script and "kind load docker-image" in script


def test_dockerignore_keeps_the_build_context_to_what_the_image_needs():
    rules = [r.strip() for r in DOCKERIGNORE.read_text().splitlines() if r.strip() and not r.startswith("#")]
    assert rules[0] == "**", "start from an empty context, then re-include"
    for needed in ("pyproject.toml", "shared/", "functions/"):
        assert f"!{needed}" in rules, f".dockerignore must re-include {needed}"
    assert not any(r.startswith("!") and (".venv" in r or ".git" in r or ".ateda" in r) for r in rules)
