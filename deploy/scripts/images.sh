#!/usr/bin/env bash
# Build the function images (one Dockerfile, one build per function) and/or load them into the Kind cluster.
#   deploy/scripts/images.sh build|load|push [function...]
# Images: ${ATEDA_IMAGE_REGISTRY:-kind.local}/ateda-<function>:${ATEDA_IMAGE_TAG:-0.1.0} (the names knative/*.yaml use).
set -euo pipefail
cd "$(dirname "$0")/../.."

REGISTRY="${ATEDA_IMAGE_REGISTRY:-kind.local}"
TAG="${ATEDA_IMAGE_TAG:-0.1.0}"
CLUSTER="${KIND_CLUSTER:-ateda}"
# image name -> functions/ folder, functions-framework signature type (as in knative/2*-svc-*.yaml) and the
# package extras it installs beyond the core (pyproject.toml; tests/test_images.py checks each function needs no more)
FUNCTIONS=(
  "minio-bridge:minio_bridge:http:"
  "split:split:cloudevent:lsst"
  "bronze:bronze:cloudevent:lsst"
  "dead-letter:dead_letter:cloudevent:"
  "dbt-refresh:dbt_refresh:cloudevent:warehouse,crossmatch"
  "crossmatch:crossmatch:cloudevent:crossmatch"
  "maintenance:maintenance:cloudevent:"
)

action="${1:?usage: $0 build|load|push [function...]}"; shift || true
wanted=("$@")

for spec in "${FUNCTIONS[@]}"; do
  IFS=: read -r name folder signature extras <<<"$spec"
  if [ "${#wanted[@]}" -gt 0 ] && [[ ! " ${wanted[*]} " == *" $name "* ]]; then continue; fi
  image="$REGISTRY/ateda-$name:$TAG"
  case "$action" in
    build)
      echo ">> build $image (functions/$folder, $signature, extras: ${extras:-none})"
      docker build -f docker/Dockerfile \
        --build-arg "FUNCTION_NAME=$folder" --build-arg "FUNCTION_SIGNATURE_TYPE=$signature" \
        --build-arg "ATEDA_EXTRAS=$extras" \
        -t "$image" .
      ;;
    load)
      echo ">> kind load $image -> $CLUSTER"
      kind load docker-image "$image" --name "$CLUSTER"
      ;;
    push)
      echo ">> push $image"
      docker push "$image"
      ;;
    *) echo "unknown action $action" >&2; exit 2 ;;
  esac
done
