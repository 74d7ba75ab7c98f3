"""Read the APIM policy files and compile their C# expressions with Mono (helpers for the tests).

Expressions are read exactly as APIM reads them: from the parsed XML, so entities are decoded and
newlines inside attribute values are already spaces. `{{named-value}}` references are textual in
APIM; here a string literal holding one becomes `NamedValues.Expand("...")`, resolved when the
compiled expression runs. A reference outside a string literal does not compile: these policies
keep named values inside string literals in expressions.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
POLICIES = REPO / "apim_policies"
FRAGMENTS = POLICIES / "fragments"
HERE = Path(__file__).resolve().parent
STUB = HERE / "apim_context_stub.cs"
HARNESS = HERE / "apim_runtime_harness.cs"

MONO_PACKAGES = "mono-mcs libnewtonsoft-json-cil-dev"
INSTALL_HINT = (
    "Mono's C# compiler is needed to compile-check the APIM policy expressions: "
    f"apt-get update && apt-get install -y --no-install-recommends {MONO_PACKAGES}"
)
NAMED_VALUE = re.compile(r"\{\{([A-Za-z0-9._-]+)\}\}")
STRING_LITERAL = re.compile(r'(?<![@$])"(?:[^"\\\n]|\\.)*"')

# What APIM expressions can use without a `using` (the namespaces of the allowed .NET types).
USINGS = """using System;
using System.Collections.Generic;
using System.Linq;
using System.Net;
using System.Text;
using System.Text.RegularExpressions;
using System.Xml.Linq;
using Newtonsoft.Json;
using Newtonsoft.Json.Linq;
using ApimStub;
"""

# `{{name}}` inside a string literal, resolved when the compiled expression runs (tests set Values).
NAMED_VALUES_CLASS = r"""public static class NamedValues
{
    public static readonly Dictionary<string, string> Values = new Dictionary<string, string>();

    public static string Expand(string text)
    {
        return Regex.Replace(text, @"\{\{([A-Za-z0-9._-]+)\}\}", m =>
            Values.ContainsKey(m.Groups[1].Value) ? Values[m.Groups[1].Value] : m.Value);
    }
}
"""


@dataclass(frozen=True)
class Expression:
    """One `@(...)` or `@{...}` policy expression and where it sits."""

    file: Path
    element: str  # tag of the element holding it
    attribute: str | None  # None: the element's text
    code: str  # the whole expression, "@(...)" or "@{...}"
    label: str  # e.g. "set-variable[chargeback-envelope]/value"

    @property
    def is_block(self) -> bool:
        return self.code.startswith("@{")

    @property
    def inner(self) -> str:
        return self.code[2:-1]

    @property
    def where(self) -> str:
        path = self.file.relative_to(REPO) if self.file.is_relative_to(REPO) else self.file
        return f"{path}: {self.label}"


def policy_files() -> list[Path]:
    """Every policy and fragment file under apim_policies/."""
    return sorted(POLICIES.rglob("*.xml"))


def fragment_files() -> list[Path]:
    return sorted(FRAGMENTS.glob("*.xml"))


def parse(path: Path) -> ET.Element:
    """The document root, with comments kept as nodes."""
    parser = ET.XMLParser(target=ET.TreeBuilder(insert_comments=True))
    return ET.parse(path, parser=parser).getroot()


def elements(root: ET.Element) -> Iterator[ET.Element]:
    """All elements in document order, comments left out."""
    return (node for node in root.iter() if isinstance(node.tag, str))


def named_values(path: Path) -> set[str]:
    return set(NAMED_VALUE.findall(path.read_text(encoding="utf-8")))


def label(element: ET.Element, attribute: str | None) -> str:
    name = element.get("name") or element.get("fragment-id")
    head = f"{element.tag}[{name}]" if name else element.tag
    return f"{head}/{attribute}" if attribute else f"{head}/text"


def expressions(path: Path) -> list[Expression]:
    """The policy expressions of one file, in document order."""
    found: list[Expression] = []
    for element in elements(parse(path)):
        for attribute, value in element.attrib.items():
            if is_expression(value):
                found.append(
                    Expression(
                        path, element.tag, attribute, value.strip(), label(element, attribute)
                    )
                )
        text = (element.text or "").strip()
        if is_expression(text):
            found.append(Expression(path, element.tag, None, text, label(element, None)))
    return found


def all_expressions() -> list[Expression]:
    return [expression for path in policy_files() for expression in expressions(path)]


def is_expression(value: str) -> bool:
    value = value.strip()
    return (value.startswith("@(") and value.endswith(")")) or (
        value.startswith("@{") and value.endswith("}")
    )


def csharp_method(name: str, expression: Expression) -> str:
    """One static method returning the expression's value, as APIM evaluates it."""
    inner = _reflow(STRING_LITERAL.sub(_expand_named_values, expression.inner))
    body = inner if expression.is_block else f"return ({inner});"
    return (
        f"    // {expression.where}\n"
        f"    public static object {name}(IProxyRequestContext context)\n"
        f"    {{\n{body}\n    }}\n"
    )


def _reflow(code: str) -> str:
    """Line breaks after ; { } outside string literals (attribute values arrive on one line)."""
    pieces, last = [], 0
    for literal in STRING_LITERAL.finditer(code):
        pieces.append(re.sub(r"([;{}])\s+", "\\1\n", code[last : literal.start()]))
        pieces.append(literal.group(0))
        last = literal.end()
    pieces.append(re.sub(r"([;{}])\s+", "\\1\n", code[last:]))
    return "".join(pieces)


def _expand_named_values(literal: re.Match[str]) -> str:
    text = literal.group(0)
    return f"NamedValues.Expand({text})" if NAMED_VALUE.search(text) else text


def csharp_source(items: Sequence[Expression]) -> tuple[str, dict[str, Expression]]:
    """A class `PolicyExpressions` with one method E0, E1, ... per expression."""
    methods: dict[str, Expression] = {f"E{index}": item for index, item in enumerate(items)}
    parts = [
        USINGS,
        NAMED_VALUES_CLASS,
        "public static class PolicyExpressions\n{\n",
        *(csharp_method(name, item) for name, item in methods.items()),
        "}\n",
    ]
    return "".join(parts), methods


def find_mcs() -> str | None:
    return shutil.which("mcs")


def find_mono() -> str | None:
    return shutil.which("mono")


def find_newtonsoft() -> Path | None:
    """Newtonsoft.Json.dll from Debian's libnewtonsoft-json*-cil (or NEWTONSOFT_JSON_DLL)."""
    override = os.environ.get("NEWTONSOFT_JSON_DLL")
    if override:
        return Path(override)
    for pattern in ("cli/Newtonsoft.Json*/Newtonsoft.Json.dll", "mono/gac/Newtonsoft.Json/*/*.dll"):
        for candidate in sorted(Path("/usr/lib").glob(pattern), reverse=True):
            return candidate
    return None


@dataclass(frozen=True)
class CompileResult:
    returncode: int
    output: str
    methods: dict[str, Expression]
    generated: Path

    @property
    def errors(self) -> list[str]:
        return [line for line in self.output.splitlines() if ": error " in line]

    def explain(self) -> str:
        """Compiler errors, each with the policy expression it belongs to."""
        lines = self.generated.read_text().splitlines()
        explained = []
        for error in self.errors:
            match = re.search(r"\((\d+),", error)
            where, code = "?", ""
            if match:
                number = int(match.group(1))
                code = lines[number - 1].strip() if number <= len(lines) else ""
                for line in reversed(lines[:number]):
                    if line.startswith("    // "):
                        where = line[7:]
                        break
            explained.append(f"{where}\n    {error}\n    in: {code}")
        return "\n".join(explained) or self.output


def compile_expressions(
    items: Sequence[Expression],
    workdir: Path,
    *,
    executable: bool = False,
) -> CompileResult:
    """Compile the expressions against the stub (and the run harness for an executable)."""
    mcs, newtonsoft = find_mcs(), find_newtonsoft()
    if mcs is None or newtonsoft is None:
        raise RuntimeError(INSTALL_HINT)
    source, methods = csharp_source(items)
    generated = workdir / "PolicyExpressions.cs"
    generated.write_text(source)
    target = workdir / ("policies.exe" if executable else "policies.dll")
    sources = [str(STUB), str(generated)] + ([str(HARNESS)] if executable else [])
    command = [
        mcs,
        "-langversion:7",  # APIM policy expressions are C# 7
        f"-target:{'exe' if executable else 'library'}",
        "-nowarn:162,168,219",  # unreachable code / unused locals: not APIM's concern
        "-r:System.Core.dll",
        "-r:System.Xml.Linq.dll",
        f"-r:{newtonsoft}",
        f"-out:{target}",
        *sources,
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if executable and done.returncode == 0:
        shutil.copy(newtonsoft, workdir / "Newtonsoft.Json.dll")
    return CompileResult(done.returncode, done.stdout + done.stderr, methods, generated)
