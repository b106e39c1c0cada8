#!/usr/bin/env bash
# Create (or update) the namespaces and the Kubernetes Secrets the platform references by name. Idempotent.
#   deploy/scripts/secrets.sh [kind|prod]
#
# Values come from the environment when set, else they are generated once and kept in .ateda/deploy/<env>.env
# (git-ignored, mode 600) so re-runs keep the same credentials:
#   ATEDA_S3_ACCESS_KEY / ATEDA_S3_SECRET_KEY   S3 keys (MinIO root; functions, Nessie, StarRocks)
#   ATEDA_BRIDGE_TOKEN                           bearer token MinIO sends to the bridge
#   ATEDA_EXPLORER_TOKEN                         bearer token of the explorer (docs/explorer.md)
#   ATEDA_PG_PASSWORD                            PostgreSQL password of user `nessie`
#   ATEDA_STARROCKS_PASSWORD                     StarRocks root password
#   ATEDA_GRAFANA_PASSWORD                       Grafana admin password (user admin)
#   ATEDA_SUPERSET_PG_PASSWORD                   PostgreSQL password of user `superset` (Superset's metadata)
#   ATEDA_SUPERSET_SECRET_KEY                    Superset's Flask SECRET_KEY (sessions, stored credentials)
#   ATEDA_SUPERSET_ADMIN_PASSWORD                Superset admin password (user admin)
#   ATEDA_SUPERSET_STARROCKS_PASSWORD            StarRocks password of the read-only user `superset` (Superset, and
#                                                the explorer in namespace ateda: knative/27-svc-explorer.yaml)
set -euo pipefail
cd "$(dirname "$0")/../.."
ENV_NAME="${1:-kind}"
STATE_DIR=".ateda/deploy"
STATE="$STATE_DIR/$ENV_NAME.env"
mkdir -p "$STATE_DIR"
umask 077
touch "$STATE"
# shellcheck disable=SC1090
source "$STATE"

gen() { python3 -c 'import secrets,sys; print(secrets.token_urlsafe(int(sys.argv[1])))' "$1"; }
keep() {  # keep NAME DEFAULT: environment value, else the saved one, else DEFAULT; saved for next time
  local name="$1" value="${!1:-}"
  [ -n "$value" ] || value="$2"
  printf -v "$name" '%s' "$value"
  export "${name?}"
  grep -v "^$name=" "$STATE" > "$STATE.tmp" || true
  printf "%s=%q\n" "$name" "$value" >> "$STATE.tmp"
  mv "$STATE.tmp" "$STATE"
}
keep ATEDA_S3_ACCESS_KEY "ateda$(gen 6 | tr -dc 'a-zA-Z0-9' | head -c 8)"
keep ATEDA_S3_SECRET_KEY "$(gen 30)"
keep ATEDA_BRIDGE_TOKEN "$(gen 32)"
keep ATEDA_EXPLORER_TOKEN "$(gen 32)"
keep ATEDA_PG_PASSWORD "$(gen 24)"
keep ATEDA_STARROCKS_PASSWORD "$(gen 24)"
keep ATEDA_GRAFANA_PASSWORD "$(gen 18)"
keep ATEDA_SUPERSET_PG_PASSWORD "$(gen 24)"
keep ATEDA_SUPERSET_SECRET_KEY "$(gen 42)"
keep ATEDA_SUPERSET_ADMIN_PASSWORD "$(gen 18)"
keep ATEDA_SUPERSET_STARROCKS_PASSWORD "$(gen 24)"

apply() { kubectl apply -f - >/dev/null; }
ns() { kubectl create namespace "$1" --dry-run=client -o yaml | apply; }
secret() {  # secret NAMESPACE NAME [--type=...] --from-literal=...
  local namespace="$1" name="$2"; shift 2
  kubectl -n "$namespace" create secret generic "$name" "$@" --dry-run=client -o yaml | apply
  echo "secret $namespace/$name: ok"
}

# The pipeline's namespace, with its labels, from the one manifest that defines it.
kubectl apply -f knative/00-namespace.yaml >/dev/null
ns monitoring
ns starrocks
ns superset

s3=(--from-literal=AWS_ACCESS_KEY_ID="$ATEDA_S3_ACCESS_KEY" --from-literal=AWS_SECRET_ACCESS_KEY="$ATEDA_S3_SECRET_KEY")
secret ateda ateda-s3 "${s3[@]}"
secret starrocks ateda-s3 "${s3[@]}"
secret ateda ateda-bridge-token --from-literal=token="$ATEDA_BRIDGE_TOKEN"
secret ateda ateda-explorer-token --from-literal=token="$ATEDA_EXPLORER_TOKEN"
secret ateda ateda-postgres --type=kubernetes.io/basic-auth \
  --from-literal=username=nessie --from-literal=password="$ATEDA_PG_PASSWORD"
secret starrocks starrocks-root --from-literal=password="$ATEDA_STARROCKS_PASSWORD"
secret ateda starrocks-root --from-literal=password="$ATEDA_STARROCKS_PASSWORD"  # the dbt-refresh function's
secret starrocks starrocks-superset --from-literal=password="$ATEDA_SUPERSET_STARROCKS_PASSWORD"
secret ateda starrocks-superset --from-literal=password="$ATEDA_SUPERSET_STARROCKS_PASSWORD"
superset_pg=(--type=kubernetes.io/basic-auth --from-literal=username=superset --from-literal=password="$ATEDA_SUPERSET_PG_PASSWORD")
secret ateda superset-postgres "${superset_pg[@]}"
secret superset superset-postgres "${superset_pg[@]}"
secret superset superset-app --from-literal=secret-key="$ATEDA_SUPERSET_SECRET_KEY" \
  --from-literal=admin-password="$ATEDA_SUPERSET_ADMIN_PASSWORD"
secret superset superset-starrocks --from-literal=password="$ATEDA_SUPERSET_STARROCKS_PASSWORD"
secret monitoring grafana-admin --from-literal=admin-user=admin --from-literal=admin-password="$ATEDA_GRAFANA_PASSWORD"
echo "credentials kept in $STATE"
