"""Routing and the request plumbing the handlers share: parsing bodies and queries the way the
registry (a FastAPI service) reports their errors, path-parameter checks, and Relay pagination."""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pydantic

from dmrv_sync.emulator.errors import error_item, from_pydantic, validation_error, validation_errors
from dmrv_sync.emulator.schemas import PageInfo, PaginationQuery

ModelT = TypeVar("ModelT", bound=pydantic.BaseModel)


@dataclass
class Request:
    method: str
    path: str  # below the mount point, e.g. /production_batches/ptb_...
    query: dict[str, str]
    body: bytes
    path_params: dict[str, str] = field(default_factory=dict)

    def json_body(self) -> Any:
        """The parsed body, with FastAPI's errors for a missing or malformed one."""
        if not self.body.strip():
            raise validation_error(["body"], "Field required", "missing", None)
        try:
            return json.loads(self.body)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            position = exc.pos if isinstance(exc, json.JSONDecodeError) else 0
            item = error_item(["body", position], "JSON decode error", "json_invalid", {})
            item["ctx"] = {"error": str(exc.msg if isinstance(exc, json.JSONDecodeError) else exc)}
            raise validation_errors([item]) from exc

    def body_model(self, model: type[ModelT]) -> ModelT:
        payload = self.json_body()
        try:
            return model.model_validate(payload)
        except pydantic.ValidationError as exc:
            raise from_pydantic(exc, ["body"]) from exc

    def query_model(self, model: type[ModelT]) -> ModelT:
        try:
            return model.model_validate(self.query)
        except pydantic.ValidationError as exc:
            raise from_pydantic(exc, ["query"]) from exc


@dataclass
class Response:
    status: int
    body: Any = None  # JSON-able; None for 204
    headers: dict[str, str] = field(default_factory=dict)


Handler = Callable[[Request], Response]


@dataclass(frozen=True)
class Route:
    method: str
    template: str  # e.g. /production_batches/{id}; also the key of the request counters
    handler: Handler

    @property
    def pattern(self) -> re.Pattern[str]:
        return re.compile("^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", self.template) + "$")


class Router:
    def __init__(self, routes: list[Route]) -> None:
        self._routes = [(route, route.pattern) for route in routes]

    @property
    def routes(self) -> list[Route]:
        return [route for route, _ in self._routes]

    def match(self, method: str, path: str) -> tuple[Route | None, dict[str, str], bool]:
        """(route, path params, path exists): a known path with another method is a 405, not a 404."""
        path_exists = False
        for route, pattern in self._routes:
            found = pattern.match(path)
            if found is None:
                continue
            path_exists = True
            if route.method == method:
                return route, found.groupdict(), True
        return None, {}, path_exists


def check_id_param(request: Request, name: str = "id") -> str:
    """Path IDs follow the spec's IsometricIDPathParam: 20..37 characters."""
    value = request.path_params[name]
    if len(value) < 20:
        raise validation_error(
            ["path", name], "String should have at least 20 characters", "string_too_short", value
        )
    if len(value) > 37:
        raise validation_error(
            ["path", name], "String should have at most 37 characters", "string_too_long", value
        )
    return value


def encode_cursor(seq: int) -> str:
    return base64.urlsafe_b64encode(f"seq:{seq}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str, parameter: str) -> int:
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        kind, _, number = text.partition(":")
        if kind != "seq":
            raise ValueError(text)
        return int(number)
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise validation_error(["query", parameter], "Invalid cursor", "value_error", cursor) from exc


def paginate(
    records: list[dict[str, Any]], query: PaginationQuery, node_model: type[pydantic.BaseModel]
) -> dict[str, Any]:
    """One Relay page over records in creation order. `first`/`after` page forwards (the default:
    first=10); `last` (when sent) or `before` pages backwards. total_count counts the whole filtered list."""
    backwards = "last" in query.model_fields_set or query.before is not None
    if backwards:
        end = len(records)
        if query.before is not None:
            before = decode_cursor(query.before, "before")
            end = sum(1 for r in records if r["seq"] < before)
        start = max(0, end - query.last)
    else:
        start = 0
        if query.after is not None:
            after = decode_cursor(query.after, "after")
            start = sum(1 for r in records if r["seq"] <= after)
        end = min(len(records), start + query.first)
    page = records[start:end]
    page_info = PageInfo(
        has_previous_page=start > 0,
        start_cursor=encode_cursor(page[0]["seq"]) if page else None,
        has_next_page=end < len(records),
        end_cursor=encode_cursor(page[-1]["seq"]) if page else None,
    )
    return {
        "nodes": [node_model.model_validate(r).model_dump(mode="json", by_alias=True) for r in page],
        "total_count": len(records),
        "page_info": page_info.model_dump(mode="json"),
    }


def answer(model: type[pydantic.BaseModel], record: dict[str, Any]) -> Response:
    """A 200 with the record as the spec's response schema (which also checks the emulator's own output)."""
    return Response(200, model.model_validate(record).model_dump(mode="json", by_alias=True))
