"""leakhunt/report/schema-v2.json (JSON Schema 2020-12) describes what leakhunt really writes; the saved
version 1 files still validate against schema-v1.json."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings

from leakhunt.model import SCHEMA_VERSION
from leakhunt.report import jsonio
from tests.report_strategies import documents

ROOT = Path(__file__).resolve().parent.parent.parent
SCHEMA: dict[str, Any] = json.loads((ROOT / "leakhunt" / "report" / "schema-v2.json").read_text())
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)
SCHEMA_V1: dict[str, Any] = json.loads((ROOT / "leakhunt" / "report" / "schema-v1.json").read_text())
VALIDATORS = {1: jsonschema.Draft202012Validator(SCHEMA_V1), 2: VALIDATOR}
SAVED = sorted((ROOT / "tests" / "fixtures").rglob("*.json"))
SAVED = [p for p in SAVED if '"schema_version"' in p.read_text()[:200]]


def test_the_schema_is_valid_and_matches_the_model_version() -> None:
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    jsonschema.Draft202012Validator.check_schema(SCHEMA_V1)
    for kind in ("investigation", "scan", "trace"):
        assert SCHEMA["$defs"][kind]["properties"]["schema_version"] == {"const": SCHEMA_VERSION}


def test_the_saved_reports_are_found() -> None:
    """The parametrized test below runs once per file found: an empty glob would make it pass by
    running nothing."""
    names = {p.name for p in SAVED}
    assert {"investigation-bcc.json", "investigation-bpftrace.json", "trace-bcc-0.26.json"} <= names


@pytest.mark.parametrize("path", SAVED, ids=[p.name for p in SAVED])
def test_real_reports_validate(path: Path) -> None:
    data = json.loads(path.read_text())
    VALIDATORS[data["schema_version"]].validate(data)
    # and what leakhunt writes of it today validates against the current schema
    VALIDATOR.validate(jsonio.to_dict(jsonio.load(path)))


@settings(max_examples=40, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(documents)
def test_every_document_dump_writes_validates(doc: jsonio.Document) -> None:
    VALIDATOR.validate(jsonio.to_dict(doc))


@pytest.mark.parametrize(
    "mutate",
    [
        lambda d: d["findings"][0].update(verdict="maybe"),
        lambda d: d["stacks"][0]["frame_fields"][0].update(address=123),
        lambda d: d.update(surprise=1),
        lambda d: d["target"].pop("pid"),
    ],
)
def test_the_schema_rejects_what_leakhunt_would_not_write(mutate: Any) -> None:
    saved = ROOT / "tests" / "fixtures" / "reports" / "investigation-bpftrace.json"
    data = jsonio.to_dict(jsonio.load(saved))
    mutate(data)
    with pytest.raises(jsonschema.ValidationError):
        VALIDATOR.validate(data)
