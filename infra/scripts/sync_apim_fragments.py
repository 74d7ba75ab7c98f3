"""Write infra/bicep/modules/apim-fragments.bicep from apim_policies/fragments/*.xml.

Bicep's loadTextContent() takes only literal paths, so a folder of fragments becomes one generated
module with a resource per file. Terraform needs no such step (it uses fileset()). Run this after
adding, renaming or removing a fragment; `--check` exits 1 when the module is out of date, which is
what the infra tests assert.

    python infra/scripts/sync_apim_fragments.py [--check]
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FRAGMENTS = ROOT / "apim_policies" / "fragments"
MODULE = ROOT / "infra" / "bicep" / "modules" / "apim-fragments.bicep"
API_VERSION = "2024-05-01"

HEADER = """\
// GENERATED from apim_policies/fragments/*.xml by infra/scripts/sync_apim_fragments.py.
// Do not edit: run the script after adding, renaming or removing a fragment.
// One policy fragment per file, named after the file: <include-fragment fragment-id="NAME" />.

@description('Name of the API Management service that receives the fragments.')
param apimName string

resource apim 'Microsoft.ApiManagement/service@{api}' existing = {{
  name: apimName
}}
"""

RESOURCE = """
resource {symbol} 'Microsoft.ApiManagement/service/policyFragments@{api}' = {{
  parent: apim
  name: '{name}'
  properties: {{
    format: 'xml'
    description: 'apim_policies/fragments/{name}.xml'
    value: loadTextContent('../../../apim_policies/fragments/{name}.xml')
  }}
}}
"""


def fragment_names(folder: Path = FRAGMENTS) -> list[str]:
    """Fragment ids (file stems) in a stable order; APIM allows letters, digits, '-', '_', '.'."""
    names = sorted(p.stem for p in folder.glob("*.xml")) if folder.is_dir() else []
    for name in names:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name):
            raise SystemExit(f"fragment file name not usable as a fragment id: {name}.xml")
    return names


def render(names: list[str]) -> str:
    parts = [HEADER.format(api=API_VERSION)]
    for name in names:
        symbol = "fragment_" + re.sub(r"[^A-Za-z0-9]", "_", name)
        parts.append(RESOURCE.format(symbol=symbol, name=name, api=API_VERSION))
    items = "".join(f"\n  '{name}'" for name in names)
    parts.append(
        "\n@description('Ids of the fragments deployed, in file-name order.')\n"
        f"output fragmentIds array = [{items}{chr(10) if names else ''}]\n"
    )
    return "".join(parts)


def main(argv: list[str]) -> int:
    expected = render(fragment_names())
    current = MODULE.read_text() if MODULE.exists() else ""
    if "--check" in argv:
        if current != expected:
            script = Path(__file__).relative_to(ROOT)
            print(f"{MODULE.relative_to(ROOT)} is out of date: run python {script}")
            return 1
        return 0
    if current != expected:
        MODULE.write_text(expected)
        print(f"wrote {MODULE.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
