#!/usr/bin/env bash
# Smoke test of a deployed platform: upload one sample ZTF alert to the `alerts` bucket with the S3 CLI and wait
# until its rows are in the bronze Iceberg table (bucket notification -> bridge -> Broker -> split -> bronze).
#   deploy/scripts/smoke.sh [alert.avro]
# S3 endpoint: ATEDA_SMOKE_S3_URL, default http://127.0.0.1:9000 (Kind publishes MinIO's NodePort there); on another
# cluster a port-forward to svc/minio is opened when nothing answers. The bronze row count is read with
# `ateda status --json` inside the bronze pod (it has the in-cluster catalog and S3 settings).
set -euo pipefail
cd "$(dirname "$0")/../.."
NS=ateda
ALERT="${1:-${ATEDA_SMOKE_ALERT:-../shared/data/ztf/alerts/alercebroker_pipeline_3044341005815015012.avro}}"
S3_URL="${ATEDA_SMOKE_S3_URL:-http://127.0.0.1:9000}"
TIMEOUT="${ATEDA_SMOKE_TIMEOUT:-300}"
[ -f "$ALERT" ] || { echo "no sample alert at $ALERT" >&2; exit 1; }

secret() { kubectl -n "$NS" get secret "$1" -o "jsonpath={.data.$2}" | base64 -d; }
export AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY
AWS_ACCESS_KEY_ID="$(secret ateda-s3 AWS_ACCESS_KEY_ID)"
AWS_SECRET_ACCESS_KEY="$(secret ateda-s3 AWS_SECRET_ACCESS_KEY)"
export AWS_DEFAULT_REGION=us-east-1 AWS_REQUEST_CHECKSUM_CALCULATION=when_required AWS_RESPONSE_CHECKSUM_VALIDATION=when_required

pf_pid=""
# shellcheck disable=SC2329  # called by the EXIT trap
cleanup() { [ -z "$pf_pid" ] || kill "$pf_pid" 2>/dev/null || true; }
trap cleanup EXIT
if ! curl -fsS -o /dev/null "$S3_URL/minio/health/ready"; then
  echo ">> $S3_URL not answering: port-forwarding svc/minio"
  kubectl -n "$NS" port-forward svc/minio 19000:9000 >/dev/null 2>&1 &
  pf_pid=$!
  S3_URL=http://127.0.0.1:19000
  for _ in $(seq 30); do curl -fsS -o /dev/null "$S3_URL/minio/health/ready" && break; sleep 1; done
fi

bronze_rows() {  # rows in bronze.alert, read inside the (always running) bronze pod
  local pod
  pod="$(kubectl -n "$NS" get pods -l serving.knative.dev/service=ateda-bronze \
          --field-selector=status.phase=Running -o name | head -1)"
  [ -n "$pod" ] || { echo -1; return; }
  kubectl -n "$NS" exec "$pod" -c function -- ateda status --json 2>/dev/null \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["tables"].get("bronze.alert", {}).get("rows", 0))' \
    || echo -1
}

before="$(bronze_rows)"
[ "$before" -ge 0 ] || before=0
key="smoke/$(date -u +%Y%m%dT%H%M%SZ)-$(basename "$ALERT")"
echo ">> upload $ALERT -> s3://alerts/$key (bronze.alert rows before: $before)"
aws --endpoint-url "$S3_URL" s3 cp "$ALERT" "s3://alerts/$key"

deadline=$((SECONDS + TIMEOUT))
while [ "$SECONDS" -lt "$deadline" ]; do
  now="$(bronze_rows)"
  if [ "$now" -gt "$before" ]; then
    echo ">> smoke test passed: bronze.alert rows $before -> $now"
    exit 0
  fi
  sleep 5
done
echo "smoke test FAILED: no new bronze rows within ${TIMEOUT}s. Look at:" >&2
echo "  kubectl -n $NS logs -l serving.knative.dev/service=ateda-minio-bridge -c function" >&2
echo "  kubectl -n $NS logs -l serving.knative.dev/service=ateda-split -c function" >&2
echo "  kubectl -n $NS logs -l serving.knative.dev/service=ateda-bronze -c function" >&2
exit 1
