#!/usr/bin/env bash
# The outputs of the `main` deployment that the later steps need, as GitHub step outputs:
#   bash infra/scripts/deployment_outputs.sh RG >>"$GITHUB_OUTPUT"
set -euo pipefail

resource_group="${1:?resource group}"
query="[functionAppName.value, apimName.value, apimGatewayUrl.value, storageAccountName.value"
query+=", chargebackStore.value, join(' ', dagsterAppNames.value)]"
mapfile -t values < <(az deployment group show --resource-group "$resource_group" --name main \
    --query "properties.outputs.$query" --output tsv)
[[ ${#values[@]} -eq 6 ]] || { echo "deployment_outputs: expected 6 outputs, got ${#values[@]}" >&2; exit 1; }

echo "function_app=${values[0]}"
echo "apim_name=${values[1]}"
echo "gateway_url=${values[2]}"
# CHARGEBACK_STORE is az://<container>; the smoke test names the account too.
echo "store=az://${values[3]}/${values[4]#az://}"
echo "dagster_apps=${values[5]}"
