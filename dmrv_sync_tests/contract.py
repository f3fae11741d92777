"""Isometric's published Certify spec as a test oracle: validate what we send and what we get back.

The spec file (`<shared>/isometric/certify-openapi.json`) predates the 2026-06-04 rename of removals to
GHG entries, so it is loaded and then renamed in memory (paths, query parameters, field names) exactly
as the rename table in `<shared>/isometric/README.md` says. The file is reference data: it is read from
the shared directory (override with DMRV_SHARED_DIR), never copied into the project.

Without the file the contract tests skip with the reason — except in CI (CI=true), where they fail.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

SPEC_URI = "urn:isometric:certify-openapi"
SERVER_BASE_PATH = "/mrv/v0"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

# The rename of 2026-06-04 (README "Rename of 2026-06-04").
PATH_RENAMES = (
    ("/removals", "/ghg_entries"),
    ("/projects/{project_id}/removal_templates", "/projects/{project_id}/ghg_entry_templates"),
)
FIELD_RENAMES = {
    "removal_template_id": "ghg_entry_template_id",
    "removal_template_components": "ghg_entry_template_components",
    "removal_template_component_id": "ghg_entry_template_component_id",
}
SCHEMA_FIELD_RENAMES = {"GhgStatement": {"removal_ids": "ghg_entry_ids"}}
QUERY_RENAMES = {"removal_id": "ghg_entry_id"}
# The schema names the client's models use, as aliases of the spec's names.
SCHEMA_ALIASES = {
    "CreateGhgEntryRequest": "CreateRemovalRequest",
    "GhgEntry": "Removal",
    "UpdateStorageLocationRequest": "PatchStorageLocationRequest",
    "GhgEntryTemplateComponentInputs": "RemovalTemplateComponentInputs",
}


class ContractViolation(AssertionError):
    pass


def spec_path() -> Path:
    shared = os.environ.get("DMRV_SHARED_DIR")
    base = Path(shared) if shared else Path(__file__).resolve().parents[1].parent / "shared"
    return base / "isometric" / "certify-openapi.json"


def require_spec() -> Path:
    """The spec's path; skips the test (fails it in CI) when the file is missing."""
    path = spec_path()
    if not path.is_file():
        reason = f"Isometric Certify spec not found at {path} (set DMRV_SHARED_DIR to the shared directory)"
        if IN_CI:
            pytest.fail(f"CI=true and the contract is required: {reason}")
        pytest.skip(reason)
    return path


def _rename_path(path: str) -> str:
    for old, new in PATH_RENAMES:
        if path == old or path.startswith(old + "/"):
            return new + path[len(old) :]
    return path


def _rename_properties(node: Any, renames: dict[str, str]) -> None:
    """Rename property keys (and `required` entries) in every object schema below `node`."""
    if isinstance(node, dict):
        props = node.get("properties")
        if isinstance(props, dict):
            node["properties"] = {renames.get(k, k): v for k, v in props.items()}
            if isinstance(node.get("required"), list):
                node["required"] = [renames.get(k, k) for k in node["required"]]
        for value in node.values():
            _rename_properties(value, renames)
    elif isinstance(node, list):
        for value in node:
            _rename_properties(value, renames)


def apply_rename(raw: dict[str, Any]) -> dict[str, Any]:
    """The spec as Isometric serves it since the rename (a transformed deep copy)."""
    spec = copy.deepcopy(raw)
    spec["paths"] = {_rename_path(p): ops for p, ops in spec["paths"].items()}
    for ops in spec["paths"].values():
        for op in ops.values():
            if not isinstance(op, dict):
                continue
            for param in op.get("parameters", []):
                if param.get("in") == "query" and param.get("name") in QUERY_RENAMES:
                    param["name"] = QUERY_RENAMES[param["name"]]
    schemas = spec["components"]["schemas"]
    _rename_properties(schemas, FIELD_RENAMES)
    _rename_properties(spec["paths"], FIELD_RENAMES)
    for name, renames in SCHEMA_FIELD_RENAMES.items():
        _rename_properties(schemas[name], renames)
    for alias, original in SCHEMA_ALIASES.items():
        schemas.setdefault(alias, {"$ref": f"#/components/schemas/{original}"})
    return spec


@dataclass(frozen=True)
class Operation:
    method: str
    template: str
    definition: dict[str, Any]


class Contract:
    """The renamed spec, with path matching and schema validation (Draft 2020-12, formats checked)."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec
        self._registry: Registry[Any] = Registry().with_resource(
            SPEC_URI, Resource.from_contents(spec, default_specification=DRAFT202012)
        )
        # Requests are checked against a closed variant: a field the spec does not define (say, the
        # pre-rename `removal_template_id`) is our bug, even though the open spec would let it pass.
        self._strict_registry: Registry[Any] = Registry().with_resource(
            SPEC_URI, Resource.from_contents(_closed(spec), default_specification=DRAFT202012)
        )
        self._templates: list[tuple[re.Pattern[str], str]] = []
        for template in spec["paths"]:
            pattern = re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(template))
            self._templates.append((re.compile(f"^{pattern}$"), template))
        # Literal segments win over parameters: /ghg_statements/{id}/submit before /ghg_statements/{id}.
        self._templates.sort(key=lambda t: t[1].count("{"))

    def template_for(self, path: str) -> str | None:
        """The spec's path template for a concrete path (with or without the /mrv/v0 prefix)."""
        if path.startswith(SERVER_BASE_PATH + "/"):
            path = path[len(SERVER_BASE_PATH) :]
        if path in self.spec["paths"]:
            return path
        for pattern, template in self._templates:
            if pattern.match(path):
                return template
        return None

    def operation(self, method: str, path: str) -> Operation:
        template = self.template_for(path)
        if template is None:
            raise ContractViolation(f"{method} {path}: no such path in the Certify spec")
        definition = self.spec["paths"][template].get(method.lower())
        if not isinstance(definition, dict):
            raise ContractViolation(f"{method} {template}: the Certify spec has no such operation")
        return Operation(method.upper(), template, definition)

    def _validator(self, pointer: str, *, strict: bool = False) -> Draft202012Validator:
        return Draft202012Validator(
            {"$ref": f"{SPEC_URI}#{pointer}"},
            registry=self._strict_registry if strict else self._registry,
            format_checker=Draft202012Validator.FORMAT_CHECKER,
        )

    def _errors(self, pointer: str, instance: Any, *, strict: bool = False) -> list[str]:
        validator = self._validator(pointer, strict=strict)
        errors = sorted(validator.iter_errors(instance), key=lambda e: list(e.absolute_path))
        return [f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}" for e in errors]

    @staticmethod
    def _pointer(*parts: str) -> str:
        return "".join("/" + p.replace("~", "~0").replace("/", "~1") for p in parts)

    def request_errors(self, method: str, path: str, body: Any) -> list[str]:
        op = self.operation(method, path)
        request_body = op.definition.get("requestBody")
        if request_body is None:
            return [] if body is None else [f"{op.method} {op.template}: the spec defines no request body"]
        if body is None:
            return (
                [f"{op.method} {op.template}: the spec requires a body"]
                if request_body.get("required")
                else []
            )
        pointer = self._pointer(
            "paths", op.template, op.method.lower(), "requestBody", "content", "application/json", "schema"
        )
        schema = _schema_name(request_body["content"]["application/json"]["schema"])
        return [
            f"{op.method} {op.template} request body ({schema}) {e}"
            for e in self._errors(pointer, body, strict=True)
        ]

    def query_errors(self, method: str, path: str, params: Iterable[tuple[str, str]]) -> list[str]:
        """Problems with a request's query string: names the operation does not declare (say the
        pre-rename `removal_id`, or a `supplier_reference_id` filter on a list that has none), and values
        outside the parameter's schema (say `first=51`)."""
        op = self.operation(method, path)
        declared = {
            p["name"]: (i, p)
            for i, p in enumerate(op.definition.get("parameters", []))
            if p.get("in") == "query"
        }
        errors: list[str] = []
        for name, raw in params:
            if name not in declared:
                errors.append(
                    f"{op.method} {op.template} query parameter {name!r}: not defined by the spec "
                    f"(defined: {', '.join(sorted(declared)) or 'none'})"
                )
                continue
            index, param = declared[name]
            value: Any = raw
            if param.get("schema", {}).get("type") in ("integer", "number"):
                with contextlib.suppress(ValueError):  # left a string: the schema check reports it
                    value = int(raw) if param["schema"]["type"] == "integer" else float(raw)
            pointer = self._pointer(
                "paths", op.template, op.method.lower(), "parameters", str(index), "schema"
            )
            errors.extend(
                f"{op.method} {op.template} query parameter {name}={raw!r}: {e}"
                for e in self._errors(pointer, value)
            )
        return errors

    def parameter_errors(self, method: str, path: str, headers: Mapping[str, str]) -> list[str]:
        """Problems with the path parameters (each against its schema: IDs are 20..37 characters) and
        the credentials: required header parameters (`x-client-secret`) present, and the operation's
        HTTP bearer security (`Authorization: Bearer <token>`) satisfied."""
        op = self.operation(method, path)
        values = self._path_values(op.template, path)
        present = {k.lower(): v for k, v in headers.items()}
        errors: list[str] = []
        for index, param in enumerate(op.definition.get("parameters", [])):
            name = param.get("name", "")
            if param.get("in") == "path" and name in values:
                pointer = self._pointer(
                    "paths", op.template, op.method.lower(), "parameters", str(index), "schema"
                )
                errors.extend(
                    f"{op.method} {op.template} path parameter {name}={values[name]!r}: {e}"
                    for e in self._errors(pointer, values[name])
                )
            elif param.get("in") == "header" and param.get("required") and not present.get(name.lower()):
                errors.append(f"{op.method} {op.template} header {name}: required, not sent")
        schemes = self.spec.get("components", {}).get("securitySchemes", {})
        for requirement in op.definition.get("security", self.spec.get("security")) or []:
            for scheme_name in requirement:
                scheme = schemes.get(scheme_name, {})
                if scheme.get("type") == "http" and str(scheme.get("scheme", "")).lower() == "bearer":
                    value = present.get("authorization", "")
                    if not (value.startswith("Bearer ") and value[len("Bearer ") :].strip()):
                        errors.append(
                            f"{op.method} {op.template} header Authorization: the spec's {scheme_name} "
                            "security needs 'Bearer <token>'"
                        )
        return errors

    def _path_values(self, template: str, path: str) -> dict[str, str]:
        if path.startswith(SERVER_BASE_PATH + "/"):
            path = path[len(SERVER_BASE_PATH) :]
        pattern = re.sub(r"\\\{([^/]+?)\\\}", r"(?P<\1>[^/]+)", re.escape(template))
        match = re.match(f"^{pattern}$", path)
        return {k: unquote(v) for k, v in match.groupdict().items()} if match else {}

    def documented_statuses(self, method: str, path: str) -> set[int]:
        """The response statuses the spec documents for an operation (others are unspecified)."""
        op = self.operation(method, path)
        return {int(s) for s in op.definition.get("responses", {}) if s.isdigit()}

    def response_errors(self, method: str, path: str, status: int, body: Any) -> list[str]:
        """Problems with a response. Statuses the spec does not document (401/404/429/5xx) pass."""
        op = self.operation(method, path)
        responses = op.definition.get("responses", {})
        key = str(status) if str(status) in responses else None
        if key is None:
            return []
        content = (responses[key].get("content") or {}).get("application/json")
        if content is None:
            return (
                [] if body in (None, b"", "") else [f"{op.method} {op.template} {status}: expected no body"]
            )
        pointer = self._pointer(
            "paths", op.template, op.method.lower(), "responses", key, "content", "application/json", "schema"
        )
        schema = _schema_name(content.get("schema", {}))
        return [
            f"{op.method} {op.template} {status} response body ({schema}) {e}"
            for e in self._errors(pointer, body)
        ]

    def schema_errors(self, schema_name: str, instance: Any) -> list[str]:
        return self._errors(self._pointer("components", "schemas", schema_name), instance)

    def validate_request(self, method: str, path: str, body: Any) -> None:
        errors = self.request_errors(method, path, body)
        if errors:
            raise ContractViolation("\n".join(errors))

    def validate_response(self, method: str, path: str, status: int, body: Any) -> None:
        errors = self.response_errors(method, path, status, body)
        if errors:
            raise ContractViolation("\n".join(errors))


def _schema_name(schema: dict[str, Any]) -> str:
    """`CreateProductionBatchRequest` for a `$ref`, `A | B` for an anyOf/oneOf of refs: for messages."""
    if "$ref" in schema:
        return str(schema["$ref"]).rsplit("/", 1)[-1]
    for key in ("anyOf", "oneOf"):
        if isinstance(schema.get(key), list):
            return " | ".join(_schema_name(s) for s in schema[key])
    return str(schema.get("type") or schema.get("title") or "inline schema")


def _closed(spec: dict[str, Any]) -> dict[str, Any]:
    """A copy where every object schema with `properties` rejects properties it does not define."""
    closed = copy.deepcopy(spec)

    def close(node: Any) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("properties"), dict) and "additionalProperties" not in node:
                node["additionalProperties"] = False
            for value in node.values():
                close(value)
        elif isinstance(node, list):
            for value in node:
                close(value)

    close(closed["components"]["schemas"])
    return closed


@lru_cache(maxsize=2)
def _load(path: str) -> Contract:
    with open(path, encoding="utf-8") as f:
        return Contract(apply_rename(json.load(f)))


def load_contract() -> Contract:
    """The renamed Certify contract; skips (or fails in CI) when the spec file is missing."""
    return _load(str(require_spec()))


def contract_if_present() -> Contract | None:
    """The renamed contract, or None when the spec file is missing (no skip, no failure: for checks
    that run alongside every test and must not turn the whole suite into skips; the contract tests
    themselves use `load_contract()` and skip, or fail in CI)."""
    path = spec_path()
    return _load(str(path)) if path.is_file() else None


def validate_request(method: str, path: str, body: Any) -> None:
    load_contract().validate_request(method, path, body)


def validate_response(method: str, path: str, status: int, body: Any) -> None:
    load_contract().validate_response(method, path, status, body)
