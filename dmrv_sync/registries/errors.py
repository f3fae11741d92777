"""What can go wrong when talking to a registry, in terms a caller (the sync core) can act on.

Every registry client raises only these. Each class says what the caller should do next:

| error                | typical cause                                   | retryable | permanent | caller does             |
|----------------------|-------------------------------------------------|-----------|-----------|-------------------------|
| `ValidationRejected` | 400 / 422: the registry refused the payload     | no        | yes       | block the entity, store the registry's message |
| `AuthError`          | 401 / 403                                       | no        | yes       | stop; fix credentials   |
| `NotFound`           | 404                                             | no        | yes       | the referenced object is gone or wrong |
| `RateLimited`        | 429 (or 408): refused before processing         | yes       | no        | wait `retry_after`, resend |
| `TransientError`     | 5xx on an idempotent request; a connection that | yes       | no        | back off, resend        |
|                      | provably never carried the request; read errors |           |           |                         |
|                      | on reads                                        |           |           |                         |
| `OutcomeUnknown`     | a non-idempotent request (create, submit) that  | no        | no        | look the object up (by supplier_reference_id or natural key), then decide |
|                      | may have reached the registry: read timeout,    |           |           |                         |
|                      | connection lost after sending, any 5xx          |           |           |                         |
| `UnexpectedResponse` | a 2xx/4xx the client cannot read                | no        | yes       | report; likely an API change |
| `ConfigurationError` | settings that must not be used (demo            | no        | yes       | fix the environment variable named in the message |
|                      | credentials on a real host, missing values)     |           |           |                         |

Why every 5xx answer to a create is `OutcomeUnknown`, not `TransientError`: a 500 means the server
failed somewhere while handling the request — possibly after the row was committed; a 502/504 comes
from a gateway whose upstream may have processed the request; even a 503 from a load balancer cannot be
told apart from one raised by an application that had already started work. The registry offers no
idempotency key, so re-sending blindly risks a duplicate credit-relevant object (design invariant 1).
Treating them as unknown costs one lookup before the resend; guessing wrong costs a duplicate.

`OutcomeUnknown` deliberately does not subclass `TransientError`: code that retries transient errors
by resending must never resend a create whose outcome is unknown.

Messages are redacted by whoever builds them (the client passes everything derived from a request or
response through `dmrv_sync.redaction.redact`); errors never carry request headers.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar


class RegistryError(Exception):
    """Base of every registry failure. `str(error)` is safe to log and store (redacted)."""

    retryable: ClassVar[bool] = False
    """The same request may be re-sent as is (after a delay)."""
    permanent: ClassVar[bool] = True
    """Re-sending without changing something (data, credentials, settings) will fail the same way."""
    needs_reconciliation: ClassVar[bool] = False
    """The registry may hold the object: look it up before anything is re-sent."""

    def __init__(
        self,
        message: str,
        *,
        registry: str | None = None,
        method: str | None = None,
        path: str | None = None,
        status_code: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.registry = registry
        self.method = method
        self.path = path
        self.status_code = status_code

    def __str__(self) -> str:
        where = " ".join(p for p in (self.method, self.path) if p)
        status = f" -> {self.status_code}" if self.status_code is not None else ""
        prefix = f"{self.registry}: " if self.registry else ""
        return f"{prefix}{where}{status}: {self.message}" if where else f"{prefix}{self.message}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self)!r})"


class ConfigurationError(RegistryError):
    """The client refuses to run with these settings; the message names the environment variable."""


class ValidationRejected(RegistryError):
    """The registry refused the payload (400/422). `detail` is the registry's own list of problems."""

    def __init__(self, message: str, *, detail: Sequence[dict[str, Any]] = (), **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.detail: list[dict[str, Any]] = list(detail)

    @property
    def summary(self) -> str:
        """One readable line per problem: `body.mass.magnitude: Input should be greater than 0`."""
        return summarize_detail(self.detail) or self.message


class AuthError(RegistryError):
    """401/403: the credentials are wrong, expired, or not allowed to do this."""


class NotFound(RegistryError):
    """404: the object (or the route) does not exist."""


class UnexpectedResponse(RegistryError):
    """An answer the client cannot interpret (unknown status, unparseable body)."""


class RateLimited(RegistryError):
    """429: the registry refused the request before processing it; wait `retry_after` seconds."""

    retryable = True
    permanent = False

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class TransientError(RegistryError):
    """A failure that did not change anything in the registry; the same request can be re-sent."""

    retryable = True
    permanent = False

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class OutcomeUnknown(RegistryError):
    """The request may have reached the registry and no usable answer came back.

    Never re-send as is: look the object up first (supplier_reference_id or natural key).
    """

    permanent = False
    needs_reconciliation = True


def summarize_detail(detail: Sequence[dict[str, Any]]) -> str:
    """`loc: msg` for each entry of a FastAPI-style `detail` list, joined with '; '."""
    parts = []
    for item in detail:
        loc = ".".join(str(p) for p in item.get("loc") or ())
        msg = str(item.get("msg") or item.get("type") or "invalid")
        parts.append(f"{loc}: {msg}" if loc else msg)
    return "; ".join(parts)
