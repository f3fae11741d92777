"""Error answers, shaped like the registry's (a FastAPI service).

422 bodies follow the spec's HTTPValidationError: `{"detail": [{"loc", "msg", "type", "input"}]}`.
The spec documents no other error body; for 401/404/405/429/5xx the emulator answers FastAPI's usual
`{"detail": "<message>"}`, which is what a client of a FastAPI service sees in practice.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pydantic

Loc = Sequence[str | int]
_JSON_SCALARS = (str, int, float, bool, type(None))


class ApiError(Exception):
    """Raised by a handler to answer with an error; the server turns it into the HTTP response."""

    def __init__(self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        super().__init__(f"{status}: {body}")
        self.status = status
        self.body = body
        self.headers = headers or {}


def error_item(loc: Loc, msg: str, type_: str = "value_error", input_: Any = None) -> dict[str, Any]:
    return {"loc": list(loc), "msg": msg, "type": type_, "input": input_}


def validation_error(loc: Loc, msg: str, type_: str = "value_error", input_: Any = None) -> ApiError:
    return ApiError(422, {"detail": [error_item(loc, msg, type_, input_)]})


def validation_errors(items: list[dict[str, Any]]) -> ApiError:
    return ApiError(422, {"detail": items})


def from_pydantic(exc: pydantic.ValidationError, loc_prefix: Loc) -> ApiError:
    """A pydantic error as the registry reports it: the location gets its part ("body", "query", ...)."""
    items = []
    for error in exc.errors(include_url=False):
        item = error_item([*loc_prefix, *error["loc"]], error["msg"], error["type"], error.get("input"))
        if "ctx" in error:
            # ctx may hold exception objects; the wire only carries their text.
            item["ctx"] = {k: v if isinstance(v, _JSON_SCALARS) else str(v) for k, v in error["ctx"].items()}
        items.append(item)
    return validation_errors(items)


def not_found(msg: str) -> ApiError:
    return ApiError(404, {"detail": msg})


def conflict(msg: str) -> ApiError:
    return ApiError(409, {"detail": msg})
