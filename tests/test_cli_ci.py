"""gtool in CI pipelines: SARIF 2.1.0 from validate and lint (GitHub code scanning), and the
pre-commit hooks file.

No package on the index ships the SARIF 2.1.0 JSON schema, so `SARIF_SUBSET` transcribes the
schema's definitions for every object gtool emits (required properties, enums, minimums, and
`additionalProperties: false` as the schema has it, so a misspelt key fails), and the tests
check what a schema cannot: rule indexes, URIs resolving to the files, lines matching the
text output.
"""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import yaml

from gtool.cli import main

ROOT = Path(__file__).resolve().parent.parent

_MESSAGE = {"type": "object", "properties": {"text": {"type": "string"}, "markdown": {"type": "string"},
                                             "id": {"type": "string"}, "arguments": {"type": "array"},
                                             "properties": {"type": "object"}},
            "anyOf": [{"required": ["text"]}, {"required": ["id"]}], "additionalProperties": False}
_ARTIFACT_LOCATION = {"type": "object", "properties": {"uri": {"type": "string", "format": "uri-reference"},
                                                       "uriBaseId": {"type": "string"},
                                                       "index": {"type": "integer", "minimum": -1},
                                                       "description": {"$ref": "#/definitions/message"},
                                                       "properties": {"type": "object"}},
                      "additionalProperties": False}
SARIF_SUBSET = {
    "$schema": "http://json-schema.org/draft-07/schema#",
    "definitions": {
        "message": _MESSAGE,
        "artifactLocation": _ARTIFACT_LOCATION,
        "multiformatMessageString": {"type": "object", "properties": {"text": {"type": "string"},
                                                                      "markdown": {"type": "string"},
                                                                      "properties": {"type": "object"}},
                                     "required": ["text"], "additionalProperties": False},
        "region": {"type": "object", "properties": {
            "startLine": {"type": "integer", "minimum": 1}, "startColumn": {"type": "integer", "minimum": 1},
            "endLine": {"type": "integer", "minimum": 1}, "endColumn": {"type": "integer", "minimum": 1},
            "properties": {"type": "object"}}, "additionalProperties": False},
        "physicalLocation": {"type": "object", "properties": {
            "artifactLocation": {"$ref": "#/definitions/artifactLocation"},
            "region": {"$ref": "#/definitions/region"}, "properties": {"type": "object"}},
            "anyOf": [{"required": ["address"]}, {"required": ["artifactLocation"]}], "additionalProperties": False},
        "location": {"type": "object", "properties": {
            "id": {"type": "integer", "minimum": -1}, "physicalLocation": {"$ref": "#/definitions/physicalLocation"},
            "message": {"$ref": "#/definitions/message"}, "properties": {"type": "object"}},
            "additionalProperties": False},
        "reportingConfiguration": {"type": "object", "properties": {
            "enabled": {"type": "boolean"}, "level": {"enum": ["none", "note", "warning", "error"]},
            "rank": {"type": "number", "minimum": -1, "maximum": 100}, "parameters": {"type": "object"},
            "properties": {"type": "object"}}, "additionalProperties": False},
        "reportingDescriptor": {"type": "object", "properties": {
            "id": {"type": "string"}, "name": {"type": "string"},
            "shortDescription": {"$ref": "#/definitions/multiformatMessageString"},
            "fullDescription": {"$ref": "#/definitions/multiformatMessageString"},
            "help": {"$ref": "#/definitions/multiformatMessageString"},
            "helpUri": {"type": "string", "format": "uri"},
            "defaultConfiguration": {"$ref": "#/definitions/reportingConfiguration"},
            "properties": {"type": "object"}}, "required": ["id"], "additionalProperties": False},
        "toolComponent": {"type": "object", "properties": {
            "name": {"type": "string"}, "version": {"type": "string"}, "semanticVersion": {"type": "string"},
            "informationUri": {"type": "string", "format": "uri"},
            "rules": {"type": "array", "uniqueItems": True, "items": {"$ref": "#/definitions/reportingDescriptor"}},
            "properties": {"type": "object"}}, "required": ["name"], "additionalProperties": False},
        "result": {"type": "object", "properties": {
            "ruleId": {"type": "string"}, "ruleIndex": {"type": "integer", "minimum": -1},
            "kind": {"enum": ["notApplicable", "pass", "fail", "review", "open", "informational"]},
            "level": {"enum": ["none", "note", "warning", "error"]}, "message": {"$ref": "#/definitions/message"},
            "locations": {"type": "array", "items": {"$ref": "#/definitions/location"}},
            "partialFingerprints": {"type": "object", "additionalProperties": {"type": "string"}},
            "properties": {"type": "object"}}, "required": ["message"], "additionalProperties": False},
    },
    "type": "object",
    "properties": {
        "$schema": {"type": "string", "format": "uri"},
        "version": {"enum": ["2.1.0"]},
        "runs": {"type": ["array", "null"], "items": {"type": "object", "properties": {
            "tool": {"type": "object", "properties": {"driver": {"$ref": "#/definitions/toolComponent"},
                                                      "properties": {"type": "object"}},
                     "required": ["driver"], "additionalProperties": False},
            "results": {"type": ["array", "null"], "items": {"$ref": "#/definitions/result"}},
            "originalUriBaseIds": {"type": "object", "additionalProperties": {"$ref": "#/definitions/artifactLocation"}},
            "columnKind": {"enum": ["utf16CodeUnits", "unicodeCodePoints"]},
            "properties": {"type": "object"}}, "required": ["tool"], "additionalProperties": False}},
    },
    "required": ["version", "runs"],
    "additionalProperties": False,
}

BROKEN = """\
gtool: 1
inputs:
  x: [3]
nodes:
  y: x @ x
  z: frobnicate(y)
outputs: [z]
"""

UNSTABLE = """\
gtool: 1
inputs:
  s: [4]
nodes:
  e: exp(s)
  p: e / sum(e)
  q: log(p)
outputs: [q]
"""


def cli(capsys, *args) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as info:
        main([str(a) for a in args])
    out = capsys.readouterr()
    return info.value.code, out.out, out.err


@pytest.fixture
def repo(tmp_path, monkeypatch):
    """A repository with graphs in a subfolder (one name needing percent-encoding), run from a subfolder."""
    (tmp_path / ".git").mkdir()
    graphs = tmp_path / "models" / "my graphs"
    graphs.mkdir(parents=True)
    (graphs / "broken.yaml").write_text(BROKEN)
    (graphs / "unstable.yaml").write_text(UNSTABLE)
    (graphs / "fine.yaml").write_text((ROOT / "graphs" / "linear_mse.yaml").read_text())
    monkeypatch.chdir(tmp_path / "models")
    return tmp_path


def check_sarif(doc: dict, repo: Path) -> list[dict]:
    jsonschema.Draft7Validator(SARIF_SUBSET, format_checker=jsonschema.FormatChecker()).validate(doc)
    (run,) = doc["runs"]
    rules = run["tool"]["driver"]["rules"]
    assert len({r["id"] for r in rules}) == len(rules)
    for r in run["results"]:
        assert rules[r["ruleIndex"]]["id"] == r["ruleId"]
        (loc,) = r["locations"]
        art = loc["physicalLocation"]["artifactLocation"]
        assert art["uriBaseId"] == "%SRCROOT%" and not art["uri"].startswith("/")
        from urllib.parse import unquote

        assert (repo / unquote(art["uri"])).is_file()  # relative to the repository, not the working folder
    return run["results"]


def test_validate_sarif_points_at_the_graph_lines(capsys, repo):
    status, out, err = cli(capsys, "validate", "my graphs", "--format", "sarif")
    assert status == 1, err
    results = check_sarif(json.loads(out), repo)
    status, text, _ = cli(capsys, "validate", "my graphs")
    expected = [line.split(": error: ")[0] for line in text.splitlines() if ": error: " in line]
    got = [f"{r['locations'][0]['physicalLocation']['artifactLocation']['uri']}" for r in results]
    assert got == ["models/my%20graphs/broken.yaml"] * len(expected) and len(expected) >= 1
    where = [(r["locations"][0]["physicalLocation"]["region"]["startLine"],
              r["locations"][0]["physicalLocation"]["region"].get("startColumn")) for r in results]
    assert [f"my graphs/broken.yaml:{line}:{col}" for line, col in where] == expected
    assert {r["level"] for r in results} == {"error"}
    assert any(r["ruleId"] == "unknown-op" and "frobnicate" in r["message"]["text"] for r in results)


def test_lint_sarif_has_rules_levels_and_the_rewrite(capsys, repo):
    status, out, err = cli(capsys, "lint", "my graphs/unstable.yaml", "--format", "sarif")
    assert status == 1, err
    results = check_sarif(json.loads(out), repo)
    assert results and all(r["level"] in ("error", "warning") for r in results)
    softmax = [r for r in results if r.get("properties", {}).get("rewrite") == "softmax"]
    assert softmax and softmax[0]["locations"][0]["physicalLocation"]["region"]["startLine"] == 6


def test_sarif_of_clean_files_is_an_empty_run(capsys, repo):
    status, out, _ = cli(capsys, "validate", "my graphs/fine.yaml", "--format", "sarif")
    assert status == 0
    assert check_sarif(json.loads(out), repo) == []


def test_sarif_usage_error_is_still_one_json_document(capsys, repo):
    status, out, err = cli(capsys, "validate", "nowhere", "--format", "sarif")
    assert status == 2 and json.loads(out)["error"]["code"] == "usage"


def test_pre_commit_hooks_run_real_commands():
    hooks = yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text())
    ids = {h["id"]: h for h in hooks}
    assert set(ids) == {"gtool-validate", "gtool-lint", "gtool-grad-check"}
    from gtool.cli import cli as group

    for h in hooks:
        assert h["language"] == "python" and h["entry"].split()[0] == "gtool"
        assert h["entry"].split()[1] in group.commands
        assert h["files"] == r"\.(ya?ml|json)$"
        assert "pass_filenames" not in h or h["pass_filenames"]
