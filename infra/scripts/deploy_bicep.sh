#!/usr/bin/env bash
# What-if or deploy infra/bicep/main.bicep with one environment's .bicepparam into its resource
# group, as the deployment named `main` (the name the READMEs read outputs from).
#
#   CHARGEBACK_PG_PASSWORD=... bash infra/scripts/deploy_bicep.sh what-if|create ENV RG [name=value ...]
#
# The .bicepparam file reads the PostgreSQL password from CHARGEBACK_PG_PASSWORD. It is compiled
# to JSON first (az bicep build-params) because inline overrides such as dagsterImage=... are
# reliable only on JSON parameter files; the JSON holds the password, so it lives in a private
# temporary folder that is removed on exit.
set -euo pipefail

mode="${1:?what-if or create}"
environment="${2:?dev, test or prod}"
resource_group="${3:?resource group}"
shift 3
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BICEP="$ROOT/infra/bicep"
: "${CHARGEBACK_PG_PASSWORD:?set CHARGEBACK_PG_PASSWORD (a secret of the GitHub environment)}"

work="$(mktemp -d "${RUNNER_TEMP:-${TMPDIR:-/tmp}}/bicep.XXXXXX")"
trap 'rm -rf "$work"' EXIT
az bicep build-params --file "$BICEP/parameters/$environment.bicepparam" \
    --outfile "$work/parameters.json"

args=(--resource-group "$resource_group" --name main
      --template-file "$BICEP/main.bicep" --parameters "@$work/parameters.json")
for override in "$@"; do
    args+=(--parameters "$override")
done

case "$mode" in
    what-if) az deployment group what-if "${args[@]}" --exclude-change-types Ignore NoChange ;;
    create) az deployment group create "${args[@]}" --output none ;;
    *) echo "deploy_bicep: mode must be what-if or create, not $mode" >&2; exit 2 ;;
esac
