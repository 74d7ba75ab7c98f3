"""Every policy expression compiles as C# 7 against the typed APIM context stub (Mono's mcs).

Fails, never skips, where Mono is missing: the message says what to install.
"""

from __future__ import annotations

import dataclasses
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from chargeback_pipeline_tests.policies import policy_tools
from chargeback_pipeline_tests.policies.conftest import require_mono
from chargeback_pipeline_tests.policies.policy_tools import (
    INSTALL_HINT,
    Expression,
    all_expressions,
    compile_expressions,
)


def _envelope_builder() -> Expression:
    [builder] = [
        e for e in all_expressions() if e.label == "set-variable[chargeback-envelope]/value"
    ]
    return builder


def test_every_policy_expression_compiles(tmp_path: Path) -> None:
    require_mono()
    items = all_expressions()
    assert len(items) >= 25
    result = compile_expressions(items, tmp_path)
    assert result.returncode == 0, result.explain()
    assert not result.errors


def test_both_expression_forms_and_every_file_are_covered() -> None:
    items = all_expressions()
    assert any(item.is_block for item in items) and any(not item.is_block for item in items)
    assert any(item.attribute is None for item in items)  # element text
    assert any(item.attribute is not None for item in items)  # escaped attribute values
    files = {item.file for item in items}
    assert len(files) == len(policy_tools.policy_files())


def test_a_typo_in_a_context_member_fails_the_compile(tmp_path: Path) -> None:
    require_mono()
    builder = _envelope_builder()
    assert "context.Request.OriginalUrl" in builder.code
    broken = dataclasses.replace(
        builder,
        code=builder.code.replace("context.Request.OriginalUrl", "context.Reqest.OriginalUrl", 1),
    )
    result = compile_expressions([broken], tmp_path)
    assert result.returncode != 0
    assert any("Reqest" in error for error in result.errors), result.output
    explained = result.explain()
    assert "chargeback-build-envelope.xml" in explained and "context.Reqest" in explained


@pytest.mark.parametrize(
    "code,why",
    [
        ("@{ if (context.RequestId == Guid.Empty) { return 1; } }", "a path without return"),
        ("@(context.Response.StatusCode.Lenght)", "a member int does not have"),
        ("@(context.LastError.Message)", "a member the stub leaves out on purpose"),
        ('@(context.Request.Headers["Accept"].ToUpper())', "string[] is not a string"),
        ('@(context.Request.Headers.GetValueOrDefault("a", null))', "an ambiguous null default"),
        ('@(context.Request.Method switch { "POST" =&gt; 1, _ =&gt; 2 })', "C# 8 syntax"),
    ],
)
def test_compile_errors_are_reported(tmp_path: Path, code: str, why: str) -> None:
    require_mono()
    decoded = ET.fromstring(f"<x a='{code}'/>").get("a", "")
    expression = Expression(policy_tools.POLICIES / "t.xml", "x", "a", decoded, why)
    result = compile_expressions([expression], tmp_path)
    assert result.returncode != 0, why


def test_without_mono_the_check_fails_with_the_install_command(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(policy_tools, "find_mcs", lambda: None)
    with pytest.raises(RuntimeError, match="apt-get install -y --no-install-recommends mono-mcs"):
        compile_expressions(all_expressions(), tmp_path)
    assert "libnewtonsoft-json-cil-dev" in INSTALL_HINT


def test_named_values_inside_string_literals_resolve_at_run_time() -> None:
    expression = Expression(
        Path("x.xml"), "x", "a", '@("{{a-b}}".Trim() == "on" &amp;&amp; "x{{c}}y" != "")', "t"
    )
    method = policy_tools.csharp_method("E0", expression)
    assert 'NamedValues.Expand("{{a-b}}").Trim()' in method
    assert 'NamedValues.Expand("x{{c}}y")' in method
