#!/usr/bin/env bash
# Build the Dagster image (the repository's Dockerfile) and push it to Azure Container Registry,
# once per commit: a tag the registry already holds (pushed by an earlier environment that shares
# the registry) is reused, so every environment runs the same bytes. Prints GitHub step outputs:
#   image=<login server>/<repository>@sha256:...   (what Bicep's dagsterImage gets: by digest)
#   registry=<login server>                         (containerRegistryServer)
#
#   bash infra/scripts/push_image.sh REGISTRY_NAME TAG >>"$GITHUB_OUTPUT"
# Needs a signed-in Azure CLI with AcrPush on the registry, and Docker. Logs go to stderr.
set -euo pipefail

registry="${1:?registry name}"
tag="${2:?image tag}"
repository="${IMAGE_REPOSITORY:-chargeback-dagster}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"

server="$(az acr show --name "$registry" --query loginServer --output tsv)"
if az acr repository show --name "$registry" --image "$repository:$tag" >/dev/null 2>&1; then
    echo "push_image: $repository:$tag is already in $server; not rebuilding" >&2
else
    az acr login --name "$registry" >&2
    docker build --tag "$server/$repository:$tag" \
        --label "org.opencontainers.image.revision=$tag" "$ROOT" >&2
    docker push "$server/$repository:$tag" >&2
fi
digest="$(az acr repository show --name "$registry" --image "$repository:$tag" \
    --query digest --output tsv)"
echo "image=$server/$repository@$digest"
echo "registry=$server"
