#!/usr/bin/env bash
# Static checks of infra/bicep, infra/terraform, the Dockerfile and .github/workflows, offline:
#   1. checkov (pinned in requirements-checkov.txt, own venv .venv-checkov), one run per framework
#      with --skip-download. It exits 0 on files it cannot parse, so this script reads the JSON
#      report and fails on any summary.parsing_errors, on any failed check, and on a framework
#      that scanned nothing. Accepted findings are suppressed in the file itself, next to the
#      resource, with the reason:
#        Terraform, Dockerfile, workflows: #checkov:skip=CKV_...: reason
#        Bicep: // checkov:skip=CKV_...: reason
#   2. terraform fmt -check -recursive, when a terraform binary is on PATH.
# Bicep itself cannot be compiled here (no registry ships the CLI); the structural tests in
# chargeback_pipeline_tests/infra/ parse it with pycep-parser.
#
#   bash infra/scripts/lint_infra.sh
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
VENV="$ROOT/.venv-checkov"
REQ="$ROOT/infra/scripts/requirements-checkov.txt"
STAMP="$VENV/.installed"
PYTHON="${PYTHON:-$(command -v python3.11 || command -v python3)}"
REPORT="$(mktemp -d)"
trap 'rm -rf "$REPORT"' EXIT

if [[ ! -f "$STAMP" || "$REQ" -nt "$STAMP" ]]; then
    echo "lint_infra: installing $(grep -v '^#' "$REQ" | xargs) into .venv-checkov"
    test -x "$VENV/bin/python" || "$PYTHON" -m venv "$VENV"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r "$REQ"
    touch "$STAMP"
fi

# framework -> what it scans (checkov's --directory or --file argument).
TARGETS=(
    "bicep:--directory=infra/bicep"
    "terraform:--directory=infra/terraform"
    "dockerfile:--file=Dockerfile"
    "github_actions:--directory=.github/workflows"
)
echo "lint_infra: checkov $("$VENV/bin/checkov" --version) on infra/bicep, infra/terraform," \
    "Dockerfile and .github/workflows"
# One run per framework (several --directory in one run print concatenated, duplicated reports).
# Exit status ignored on purpose: the JSON report is the verdict (parse errors exit 0).
for target in "${TARGETS[@]}"; do
    framework="${target%%:*}"
    "$VENV/bin/checkov" "${target#*:}" --framework "$framework" \
        --skip-download --quiet --compact --output json \
        >"$REPORT/$framework.json" 2>"$REPORT/$framework.err" || true
done

set +e
"$VENV/bin/python" - "$REPORT" "${TARGETS[@]%%:*}" <<'PY'
import json
import sys
from pathlib import Path

import yaml  # checkov's own dependency, in its venv

folder = Path(sys.argv[1])
problems = 0
for framework in sys.argv[2:]:
    raw = (folder / f"{framework}.json").read_text()
    if not raw.strip():
        err = (folder / f"{framework}.err").read_text()[-4000:]
        print(f"  {framework}: checkov wrote no report\n{err}")
        problems += 1
        continue
    data = json.loads(raw)
    reports = data if isinstance(data, list) else [data]
    report = next((r for r in reports if r.get("check_type") == framework), None)
    if report is None:
        print(f"  {framework}: no files scanned")
        problems += 1
        continue
    summary = report["summary"]
    results = report.get("results", {})
    print(
        f"  {framework}: {summary['resource_count']} resources, {summary['passed']} passed, "
        f"{summary['failed']} failed, {summary['skipped']} skipped (accepted inline), "
        f"{summary['parsing_errors']} parsing errors"
    )
    for path in results.get("parsing_errors", []):
        print(f"    PARSE ERROR {path}")
    for check in results.get("failed_checks", []):
        lines = "-".join(str(n) for n in check.get("file_line_range", []))
        print(f"    FAILED {check['check_id']} {check['resource']} {check['file_path']}:{lines}")
        print(f"           {check['check_name']}")
    problems += summary["parsing_errors"] + summary["failed"]

# checkov's github_actions runner skips a workflow it cannot read without counting a parsing
# error, so every workflow is read here too.
for path in sorted(Path(".github/workflows").glob("*.y*ml")):
    try:
        doc = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        doc = str(error).splitlines()[0]
    if not (isinstance(doc, dict) and isinstance(doc.get("jobs"), dict)):
        print(f"    PARSE ERROR {path}: not a workflow with jobs ({doc!r:.200})")
        problems += 1
sys.exit(1 if problems else 0)
PY
status=$?
set -e
[[ $status -eq 0 ]] || { echo "lint_infra: checkov FAILED"; exit "$status"; }

if command -v terraform >/dev/null 2>&1; then
    # A TF_CLI_CONFIG_FILE that does not exist only produces a warning; fmt needs no config.
    if [[ -n "${TF_CLI_CONFIG_FILE:-}" && ! -f "$TF_CLI_CONFIG_FILE" ]]; then unset TF_CLI_CONFIG_FILE; fi
    echo "lint_infra: terraform fmt -check -recursive infra/terraform ($(terraform version | head -n1))"
    if ! terraform fmt -check -recursive infra/terraform; then
        echo "lint_infra: terraform fmt FAILED (run: terraform fmt -recursive infra/terraform)"
        exit 1
    fi
else
    echo "lint_infra: terraform not on PATH: skipping terraform fmt -check"
fi
echo "lint_infra: OK"
