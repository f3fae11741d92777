"""The HTTP client for Isometric's Certify API (v0): requests, retries, pacing, typed errors.

Retry rules (design invariants 1 and 5):

| request                                   | retried on                                         | never retried: raises      |
|-------------------------------------------|----------------------------------------------------|----------------------------|
| GET, PATCH, DELETE (idempotent)           | 429/408, 5xx, connect errors, timeouts, dropped    | 4xx other than 408/429     |
|                                           | connections                                        |                            |
| POST (creates, submit: not idempotent)    | 429/408 and errors raised before the request left  | read timeout, connection   |
|                                           | (ConnectError, ConnectTimeout, PoolTimeout)        | lost after sending, any    |
|                                           |                                                    | 5xx → `OutcomeUnknown`     |

PATCH counts as idempotent: the API's PATCH sets the given fields to the given values, so sending the
same body twice leaves the same state. DELETE too: a repeat answers 404, which the caller can read as
"already gone". A POST is never re-sent once it may have reached the registry: the registry has no
idempotency key, so the sync core looks the object up by `supplier_reference_id` first.

Every attempt (retries included) first takes a slot from the shared request budget
(`dmrv_sync.registries.budget`), so retries cannot exceed the registry's rate either.

Secrets: the two credentials are added per request by an `httpx.Auth` whose repr shows nothing, so
they are not in the client's default headers, its repr, the log lines, the observer records, or the
errors (whose messages go through `redact` because they quote registry answers).
"""

from __future__ import annotations

import email.utils
import ipaddress
import json
import logging
import random
import sys
import time
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, Literal, TypeVar
from urllib.parse import quote, urlsplit

import httpx
from pydantic import BaseModel, SecretStr, ValidationError

from dmrv_sync.redaction import redact
from dmrv_sync.registries.budget import (
    PACED_SWITCH_INTERVAL,
    DatabaseBudget,
    RequestBudget,
    pacing_for,
)
from dmrv_sync.registries.errors import (
    AuthError,
    ConfigurationError,
    NotFound,
    OutcomeUnknown,
    RateLimited,
    RegistryError,
    TransientError,
    UnexpectedResponse,
    ValidationRejected,
    summarize_detail,
)
from dmrv_sync.registries.isometric.models import (
    BiocharApplication,
    CreateBiocharApplicationRequest,
    CreateDatapointRequest,
    CreateGhgEntryRequest,
    CreateGhgStatementRequest,
    CreateProductionBatchRequest,
    CreateStorageLocationRequest,
    Datapoint,
    FeedstockType,
    GhgEntry,
    GhgEntryTemplate,
    GhgStatement,
    ProductionBatch,
    ResubmitGhgStatementRequest,
    StorageLocation,
    SubmitGhgStatementRequest,
    UpdateDatapointRequest,
    UpdateStorageLocationRequest,
)
from dmrv_sync.settings import DEMO_ACCESS_TOKEN, DEMO_CLIENT_SECRET, Settings

REGISTRY_NAME = "isometric"
logger = logging.getLogger("dmrv_sync.registries.isometric")

DEFAULT_TIMEOUT = httpx.Timeout(connect=5.0, read=30.0, write=30.0, pool=10.0)
MAX_PAGE_SIZE = 50  # the API's maximum for `first`

M = TypeVar("M", bound=BaseModel)
Outcome = Literal["ok", "error", "unknown"]


@dataclass(frozen=True)
class RequestRecord:
    """What the observer learns about one HTTP attempt. Never contains headers or secrets."""

    method: str
    path: str  # the template, e.g. /production_batches/{id}
    status_code: int | None
    duration_ms: float
    outcome: Outcome  # as AuditOutcome: ok | error | unknown (sent, no usable answer)
    error: str | None  # redacted
    attempt: int
    will_retry: bool
    sent_at: float  # epoch seconds when the request left (after the budget's wait)


Observer = Callable[[RequestRecord], None]


@dataclass(frozen=True)
class _Resource:
    list_path: str
    model: type[BaseModel]
    filter_by_reference: bool  # the list accepts ?supplier_reference_id=


# How each resource can be found again by supplier_reference_id (README: "Finding an object again").
RESOURCES: dict[str, _Resource] = {
    "ghg_entries": _Resource("/ghg_entries", GhgEntry, True),
    "datapoints": _Resource("/datapoints", Datapoint, True),
    "feedstock_types": _Resource("/feedstock_types", FeedstockType, True),
    "production_batches": _Resource("/production_batches", ProductionBatch, False),
    "biochar_applications": _Resource("/biochar_applications", BiocharApplication, False),
    "storage_locations": _Resource("/projects/{project_id}/storage_locations", StorageLocation, False),
}

# Every (method, path template) this client can call; the contract tests check each against the spec.
ENDPOINTS: frozenset[tuple[str, str]] = frozenset(
    {
        ("GET", "/feedstock_types"),
        ("GET", "/production_batches"),
        ("POST", "/production_batches"),
        ("GET", "/production_batches/{id}"),
        ("DELETE", "/production_batches/{id}"),
        ("GET", "/projects/{project_id}/storage_locations"),
        ("POST", "/projects/{project_id}/storage_locations"),
        ("GET", "/projects/{project_id}/storage_locations/{id}"),
        ("PATCH", "/projects/{project_id}/storage_locations/{id}"),
        ("DELETE", "/projects/{project_id}/storage_locations/{id}"),
        ("GET", "/biochar_applications"),
        ("POST", "/biochar_applications"),
        ("GET", "/biochar_applications/{id}"),
        ("DELETE", "/biochar_applications/{id}"),
        ("GET", "/datapoints"),
        ("POST", "/datapoints"),
        ("GET", "/datapoints/{id}"),
        ("PATCH", "/datapoints/{id}"),
        ("GET", "/projects/{project_id}/ghg_entry_templates/{id}"),
        ("GET", "/ghg_entries"),
        ("POST", "/ghg_entries"),
        ("GET", "/ghg_entries/{id}"),
        ("DELETE", "/ghg_entries/{id}"),
        ("GET", "/ghg_statements"),
        ("POST", "/ghg_statements"),
        ("GET", "/ghg_statements/{id}"),
        ("POST", "/ghg_statements/{id}/submit"),
    }
)

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "PATCH", "DELETE"})
# Raised before any byte of the request left: safe to re-send whatever the method.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


class _CredentialAuth(httpx.Auth):
    """Adds both credentials to each request; keeps them out of default headers and reprs."""

    def __init__(self, client_secret: SecretStr, access_token: SecretStr) -> None:
        self._client_secret = client_secret
        self._access_token = access_token

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["X-Client-Secret"] = self._client_secret.get_secret_value()
        request.headers["Authorization"] = f"Bearer {self._access_token.get_secret_value()}"
        yield request

    def __repr__(self) -> str:
        return "_CredentialAuth(***)"


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a `Retry-After` header: delta-seconds or an HTTP-date; None if absent/bad."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def is_loopback_url(url: str) -> bool:
    host = (urlsplit(url).hostname or "").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class IsometricClient:
    """One client per credential; thread-safe (one `httpx.Client` shared by worker threads)."""

    registry_name = REGISTRY_NAME

    def __init__(
        self,
        *,
        base_url: str,
        client_secret: SecretStr | str,
        access_token: SecretStr | str,
        project_id: str,
        budget: RequestBudget,
        timeout: httpx.Timeout = DEFAULT_TIMEOUT,
        max_attempts: int = 5,
        backoff_base: float = 0.5,
        backoff_cap: float = 30.0,
        max_retry_after: float = 300.0,
        observer: Observer | None = None,
        sleep: Callable[[float], None] = time.sleep,
        jitter: Callable[[float, float], float] = random.uniform,
        transport: httpx.BaseTransport | None = None,
        event_hooks: Mapping[str, list[Callable[..., Any]]] | None = None,
    ) -> None:
        secret = client_secret if isinstance(client_secret, SecretStr) else SecretStr(client_secret)
        token = access_token if isinstance(access_token, SecretStr) else SecretStr(access_token)
        self.base_url = base_url.rstrip("/")
        _check_configuration(self.base_url, secret, token)
        if max_attempts < 1:
            raise ValueError("max_attempts must be >= 1")
        self.project_id = project_id
        self.max_attempts = max_attempts
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.max_retry_after = max_retry_after
        self._budget = budget
        self._observer = observer
        self._sleep = sleep
        self._jitter = jitter
        self._secrets = tuple(s for s in (secret.get_secret_value(), token.get_secret_value()) if s)
        self._http = httpx.Client(
            base_url=self.base_url + "/",
            auth=_CredentialAuth(secret, token),
            timeout=timeout,
            transport=transport,
            headers={"Accept": "application/json", "User-Agent": "dmrv-sync"},
            event_hooks={k: list(v) for k, v in (event_hooks or {}).items()},
            follow_redirects=False,
        )

    @classmethod
    def from_settings(
        cls, settings: Settings, *, budget: RequestBudget | None = None, **kwargs: Any
    ) -> IsometricClient:
        """The client for the configured credential; by default paced by the shared database budget."""
        if budget is None:
            # The sender of a paced request waits for the GIL while the run's other threads work; a
            # shorter switch interval keeps that wait (an arrival later than its slot) small.
            sys.setswitchinterval(min(sys.getswitchinterval(), PACED_SWITCH_INTERVAL))
            jitter_allowance, late_tolerance = pacing_for(
                settings.isometric_requests_per_second, settings.isometric_rate_limit_burst
            )
            budget = DatabaseBudget.for_credential(
                settings.database_url,
                REGISTRY_NAME,
                settings.isometric_client_secret.get_secret_value(),
                settings.isometric_requests_per_second,
                jitter_allowance=jitter_allowance,
                late_tolerance=late_tolerance,
            )
        return cls(
            base_url=settings.isometric_url,
            client_secret=settings.isometric_client_secret,
            access_token=settings.isometric_access_token,
            project_id=settings.isometric_project_id,
            budget=budget,
            **kwargs,
        )

    def __repr__(self) -> str:
        return f"IsometricClient(base_url={self.base_url!r}, project_id={self.project_id!r})"

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> IsometricClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # --- feedstock types ---------------------------------------------------------------------------

    def get_feedstock_type_by_reference(self, supplier_reference_id: str) -> FeedstockType:
        """The feedstock type created in the web app with this reference; NotFound says what to do."""
        found = self.find_by_supplier_reference("feedstock_types", supplier_reference_id)
        if found is None:
            raise NotFound(
                f"no feedstock type with supplier_reference_id {supplier_reference_id!r}: the API cannot "
                "create feedstock types; create it in the Isometric Certify web app with that reference",
                registry=REGISTRY_NAME,
                method="GET",
                path="/feedstock_types",
            )
        assert isinstance(found, FeedstockType)
        return found

    # --- production batches ------------------------------------------------------------------------

    def create_production_batch(self, request: CreateProductionBatchRequest) -> ProductionBatch:
        return self._call(ProductionBatch, "POST", "/production_batches", json_body=request.to_wire())

    def get_production_batch(self, production_batch_id: str) -> ProductionBatch:
        return self._call(ProductionBatch, "GET", "/production_batches/{id}", id=production_batch_id)

    def delete_production_batch(self, production_batch_id: str) -> None:
        self._request("DELETE", "/production_batches/{id}", path_params={"id": production_batch_id})

    # --- storage locations -------------------------------------------------------------------------

    def create_storage_location(self, request: CreateStorageLocationRequest) -> StorageLocation:
        return self._call(
            StorageLocation,
            "POST",
            "/projects/{project_id}/storage_locations",
            json_body=request.to_wire(),
            project_id=request.project_id,
        )

    def update_storage_location(
        self,
        storage_location_id: str,
        request: UpdateStorageLocationRequest,
        *,
        project_id: str | None = None,
    ) -> StorageLocation:
        return self._call(
            StorageLocation,
            "PATCH",
            "/projects/{project_id}/storage_locations/{id}",
            json_body=request.to_wire(),
            project_id=project_id or self.project_id,
            id=storage_location_id,
        )

    def get_storage_location(
        self, storage_location_id: str, *, project_id: str | None = None
    ) -> StorageLocation:
        return self._call(
            StorageLocation,
            "GET",
            "/projects/{project_id}/storage_locations/{id}",
            project_id=project_id or self.project_id,
            id=storage_location_id,
        )

    def delete_storage_location(self, storage_location_id: str, *, project_id: str | None = None) -> None:
        self._request(
            "DELETE",
            "/projects/{project_id}/storage_locations/{id}",
            path_params={"project_id": project_id or self.project_id, "id": storage_location_id},
        )

    # --- biochar applications ----------------------------------------------------------------------

    def create_biochar_application(self, request: CreateBiocharApplicationRequest) -> BiocharApplication:
        return self._call(BiocharApplication, "POST", "/biochar_applications", json_body=request.to_wire())

    def get_biochar_application(self, biochar_application_id: str) -> BiocharApplication:
        return self._call(BiocharApplication, "GET", "/biochar_applications/{id}", id=biochar_application_id)

    def delete_biochar_application(self, biochar_application_id: str) -> None:
        self._request("DELETE", "/biochar_applications/{id}", path_params={"id": biochar_application_id})

    # --- datapoints --------------------------------------------------------------------------------

    def create_datapoint(self, request: CreateDatapointRequest) -> Datapoint:
        return self._call(Datapoint, "POST", "/datapoints", json_body=request.to_wire())

    def get_datapoint(self, datapoint_id: str) -> Datapoint:
        return self._call(Datapoint, "GET", "/datapoints/{id}", id=datapoint_id)

    def update_datapoint(self, datapoint_id: str, request: UpdateDatapointRequest) -> Datapoint:
        """Only the fields set change. A datapoint used by a GHG entry with the verifier is locked (422)."""
        return self._call(
            Datapoint, "PATCH", "/datapoints/{id}", json_body=request.to_wire(), id=datapoint_id
        )

    # --- GHG entry templates (made in the Certify web app) ----------------------------------------

    def get_ghg_entry_template(self, template_id: str, *, project_id: str | None = None) -> GhgEntryTemplate:
        return self._call(
            GhgEntryTemplate,
            "GET",
            "/projects/{project_id}/ghg_entry_templates/{id}",
            project_id=project_id or self.project_id,
            id=template_id,
        )

    # --- GHG entries -------------------------------------------------------------------------------

    def create_ghg_entry(self, request: CreateGhgEntryRequest) -> GhgEntry:
        return self._call(GhgEntry, "POST", "/ghg_entries", json_body=request.to_wire())

    def get_ghg_entry(self, ghg_entry_id: str) -> GhgEntry:
        return self._call(GhgEntry, "GET", "/ghg_entries/{id}", id=ghg_entry_id)

    def delete_ghg_entry(self, ghg_entry_id: str) -> None:
        """Only a draft entry (not in a statement) can be deleted."""
        self._request("DELETE", "/ghg_entries/{id}", path_params={"id": ghg_entry_id})

    # --- GHG statements ----------------------------------------------------------------------------

    def create_ghg_statement(self, request: CreateGhgStatementRequest) -> GhgStatement:
        return self._call(GhgStatement, "POST", "/ghg_statements", json_body=request.to_wire())

    def get_ghg_statement(self, ghg_statement_id: str) -> GhgStatement:
        return self._call(GhgStatement, "GET", "/ghg_statements/{id}", id=ghg_statement_id)

    def submit_ghg_statement(
        self, ghg_statement_id: str, request: SubmitGhgStatementRequest | ResubmitGhgStatementRequest
    ) -> GhgStatement:
        """Submit (DRAFT) or resubmit (FAILED_VERIFICATION, with `summary_of_changes`) for verification.

        Not idempotent: a lost answer raises OutcomeUnknown; read the statement's status to settle it.
        """
        return self._call(
            GhgStatement,
            "POST",
            "/ghg_statements/{id}/submit",
            json_body=request.to_wire(),
            id=ghg_statement_id,
        )

    def list_ghg_statements(self, *, project_id: str | None = None) -> list[GhgStatement]:
        """Every statement the credential can see (the API has no filter); `project_id` filters locally."""
        statements = [GhgStatement.model_validate(n) for n in self.paginate("/ghg_statements")]
        return [s for s in statements if project_id is None or s.project_id == project_id]

    def find_ghg_statement(self, end_on: date, *, project_id: str | None = None) -> GhgStatement | None:
        """A statement by its natural key (project, reporting period end): statements have no reference."""
        project_id = project_id or self.project_id
        for statement in self.list_ghg_statements(project_id=project_id):
            if statement.reporting_period_end_at == end_on:
                return statement
        return None

    # --- listing and finding again -----------------------------------------------------------------

    def paginate(
        self, path: str, params: Mapping[str, Any] | None = None, page_size: int = MAX_PAGE_SIZE
    ) -> Iterator[dict[str, Any]]:
        """Every node of a Relay-style list, page after page (`first`/`after`).

        `path` is a template; `{project_id}` is filled with the client's project.
        """
        if not 0 < page_size <= MAX_PAGE_SIZE:
            raise ValueError(f"page_size must be 1..{MAX_PAGE_SIZE}")
        query: dict[str, Any] = dict(params or {})
        query["first"] = page_size
        path_params = {"project_id": self.project_id} if "{project_id}" in path else {}
        seen_cursors: set[str] = set()
        while True:
            page = self._request_json("GET", path, params=query, path_params=path_params)
            if not isinstance(page, dict) or not isinstance(page.get("nodes"), list):
                raise UnexpectedResponse(
                    "list answer without a 'nodes' array", registry=REGISTRY_NAME, method="GET", path=path
                )
            yield from page["nodes"]
            page_info = page.get("page_info") or {}
            cursor = page_info.get("end_cursor")
            if not page_info.get("has_next_page") or not cursor:
                return
            if cursor in seen_cursors:  # a registry bug must not turn into an endless loop
                raise UnexpectedResponse(
                    f"list cursor {cursor!r} repeated", registry=REGISTRY_NAME, method="GET", path=path
                )
            seen_cursors.add(cursor)
            query["after"] = cursor

    def find_by_supplier_reference(self, resource: str, supplier_reference_id: str) -> BaseModel | None:
        """The object of `resource` created with this reference, or None.

        One filtered request for ghg_entries, datapoints and feedstock_types; a paging pass (stopping at the match)
        for production_batches, biochar_applications and storage_locations, which have no filter.
        """
        return self.find_many_by_supplier_reference(resource, [supplier_reference_id]).get(
            supplier_reference_id
        )

    def find_many_by_supplier_reference(
        self, resource: str, references: Iterable[str]
    ) -> dict[str, BaseModel]:
        """Settle many references at once: {reference: object} for those the registry holds.

        Unfiltered resources cost one listing pass for all references together (it stops early once
        every reference is found); filtered ones cost one request per reference.
        """
        spec = _resource(resource)
        wanted = set(references)
        found: dict[str, BaseModel] = {}
        if not wanted:
            return found
        if spec.filter_by_reference:
            for reference in sorted(wanted):
                # The filter is trusted only as far as the node says so: a registry that ignored it
                # must not make us adopt someone else's object.
                for node in self.paginate(spec.list_path, {"supplier_reference_id": reference}):
                    if node.get("supplier_reference_id") == reference:
                        self._adopt(found, reference, node, spec)
            return found
        for node in self.paginate(spec.list_path):
            node_reference = node.get("supplier_reference_id")
            if node_reference in wanted:
                self._adopt(found, node_reference, node, spec)
                if len(found) == len(wanted):
                    break
        return found

    @staticmethod
    def _adopt(found: dict[str, BaseModel], reference: str, node: dict[str, Any], spec: _Resource) -> None:
        if reference in found:
            logger.warning(
                "isometric: several objects at %s carry supplier_reference_id %r; keeping %s, ignoring %s",
                spec.list_path,
                reference,
                getattr(found[reference], "id", "?"),
                node.get("id"),
            )
            return
        found[reference] = spec.model.model_validate(node)

    # --- the request machinery ---------------------------------------------------------------------

    def _call(
        self, model: type[M], method: str, template: str, *, json_body: Any = None, **path_params: str
    ) -> M:
        response = self._request(method, template, json_body=json_body, path_params=path_params)
        idempotent = method in IDEMPOTENT_METHODS
        try:
            return model.model_validate(response.json())
        except (ValueError, ValidationError) as exc:
            text = redact(str(exc).splitlines()[0] if str(exc) else type(exc).__name__, self._secrets)
            message = f"answered {response.status_code} with a body that is not a {model.__name__}: {text}"
            kwargs = {
                "registry": REGISTRY_NAME,
                "method": method,
                "path": response.request.url.path,
                "status_code": response.status_code,
            }
            if idempotent:
                raise UnexpectedResponse(message, **kwargs) from None  # type: ignore[arg-type]
            # The registry said yes but we cannot read what it made: it exists, find it by reference.
            raise OutcomeUnknown(message, **kwargs) from None  # type: ignore[arg-type]

    def _request_json(
        self,
        method: str,
        template: str,
        *,
        params: Mapping[str, Any] | None = None,
        path_params: Mapping[str, str] | None = None,
    ) -> Any:
        response = self._request(method, template, params=params, path_params=path_params)
        try:
            return response.json()
        except ValueError:
            raise UnexpectedResponse(
                f"answered {response.status_code} with a body that is not JSON",
                registry=REGISTRY_NAME,
                method=method,
                path=response.request.url.path,
                status_code=response.status_code,
            ) from None

    def _request(
        self,
        method: str,
        template: str,
        *,
        json_body: Any = None,
        params: Mapping[str, Any] | None = None,
        path_params: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        """Send with pacing and retries; returns a 2xx response or raises a `RegistryError`."""
        path = _fill(template, path_params or {})
        idempotent = method in IDEMPOTENT_METHODS
        content = None if json_body is None else json.dumps(json_body).encode("utf-8")
        headers = {"Content-Type": "application/json"} if content is not None else None
        for attempt in range(1, self.max_attempts + 1):
            self._budget.acquire()
            started = time.monotonic()
            response: httpx.Response | None = None
            try:
                response = self._http.request(
                    method, path.lstrip("/"), content=content, params=params, headers=headers
                )
            except httpx.TransportError as exc:
                error = self._transport_error(exc, method, path, idempotent)
            else:
                if response.is_success:
                    self._report(method, template, response.status_code, started, "ok", None, attempt, False)
                    return response
                error = self._status_error(response, method, path, idempotent)
            will_retry = self._should_retry(error, attempt)
            outcome: Outcome = "unknown" if isinstance(error, OutcomeUnknown) else "error"
            status = response.status_code if response is not None else None
            self._report(method, template, status, started, outcome, str(error), attempt, will_retry)
            if not will_retry:
                raise error
            delay = self._retry_delay(error, attempt)
            logger.warning(
                "isometric %s %s failed (%s); retry %d/%d in %.2f s",
                method,
                template,
                status if status is not None else type(error).__name__,
                attempt + 1,
                self.max_attempts,
                delay,
            )
            self._sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    def _should_retry(self, error: RegistryError, attempt: int) -> bool:
        if not error.retryable or attempt >= self.max_attempts:
            return False
        retry_after = getattr(error, "retry_after", None)
        # A registry asking for a longer pause than we are willing to hold a worker: give up now and
        # let the caller reschedule (the error says how long).
        return retry_after is None or retry_after <= self.max_retry_after

    def _retry_delay(self, error: RegistryError, attempt: int) -> float:
        retry_after = getattr(error, "retry_after", None)
        if retry_after is not None:
            return float(retry_after)
        # Exponential backoff with full jitter: uniform(0, min(cap, base * 2^(attempt-1))).
        return self._jitter(0.0, min(self.backoff_cap, self.backoff_base * 2 ** (attempt - 1)))

    def _transport_error(
        self, exc: httpx.TransportError, method: str, path: str, idempotent: bool
    ) -> RegistryError:
        kind = type(exc).__name__
        detail = redact(str(exc), self._secrets) or kind
        where: dict[str, Any] = {"registry": REGISTRY_NAME, "method": method, "path": path}
        if isinstance(exc, httpx.UnsupportedProtocol):
            return ConfigurationError(f"{kind}: {detail}; check ISOMETRIC_BASE_URL", **where)
        if isinstance(exc, _NOT_SENT):
            return TransientError(f"{kind} (request not sent): {detail}", **where)
        if idempotent:
            return TransientError(f"{kind}: {detail}", **where)
        return OutcomeUnknown(
            f"{kind} after the request may have been sent: {detail}; the object may exist — "
            "look it up by supplier_reference_id before sending again",
            **where,
        )

    def _status_error(
        self, response: httpx.Response, method: str, path: str, idempotent: bool
    ) -> RegistryError:
        status = response.status_code
        body = _json_or_none(response)
        registry_message = _registry_message(body, response, self._secrets)
        where: dict[str, Any] = {
            "registry": REGISTRY_NAME,
            "method": method,
            "path": path,
            "status_code": status,
        }
        if status in (400, 422):
            detail = body.get("detail") if isinstance(body, dict) else None
            items = _redact_obj(detail, self._secrets) if isinstance(detail, list) else []
            items = [i for i in items if isinstance(i, dict)]
            summary = summarize_detail(items) or registry_message
            return ValidationRejected(f"rejected: {summary}", detail=items, **where)
        if status in (401, 403):
            return AuthError(
                f"not authorised: {registry_message}; check ISOMETRIC_CLIENT_SECRET and "
                "ISOMETRIC_ACCESS_TOKEN (the token is scoped to one organisation and expires after a year)",
                **where,
            )
        if status == 404:
            return NotFound(f"not found: {registry_message}", **where)
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        if status in (408, 429):
            return RateLimited(f"{status}: {registry_message}", retry_after=retry_after, **where)
        if status >= 500:
            if idempotent:
                return TransientError(f"server error: {registry_message}", retry_after=retry_after, **where)
            return OutcomeUnknown(
                f"server error after the request was sent: {registry_message}; the object may exist — "
                "look it up by supplier_reference_id before sending again",
                **where,
            )
        return UnexpectedResponse(f"unexpected status: {registry_message}", **where)

    def _report(
        self,
        method: str,
        template: str,
        status: int | None,
        started: float,
        outcome: Outcome,
        error: str | None,
        attempt: int,
        will_retry: bool,
    ) -> None:
        elapsed = time.monotonic() - started
        duration_ms = elapsed * 1000.0
        logger.debug(
            "isometric %s %s -> %s in %.1f ms (attempt %d)%s",
            method,
            template,
            status if status is not None else outcome,
            duration_ms,
            attempt,
            f": {error}" if error else "",
        )
        if self._observer is None:
            return
        record = RequestRecord(
            method, template, status, duration_ms, outcome, error, attempt, will_retry, time.time() - elapsed
        )
        try:
            self._observer(record)
        except Exception:  # an audit hiccup must not turn a registry success into a failure
            logger.exception("isometric: request observer failed")


def _check_configuration(base_url: str, secret: SecretStr, token: SecretStr) -> None:
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigurationError(
            f"ISOMETRIC_BASE_URL {base_url!r} is not an http(s) URL", registry=REGISTRY_NAME
        )
    if not secret.get_secret_value():
        raise ConfigurationError("ISOMETRIC_CLIENT_SECRET is empty", registry=REGISTRY_NAME)
    if not token.get_secret_value():
        raise ConfigurationError("ISOMETRIC_ACCESS_TOKEN is empty", registry=REGISTRY_NAME)
    if is_loopback_url(base_url):
        return
    demo = [
        name
        for name, value, demo_value in (
            ("ISOMETRIC_CLIENT_SECRET", secret, DEMO_CLIENT_SECRET),
            ("ISOMETRIC_ACCESS_TOKEN", token, DEMO_ACCESS_TOKEN),
        )
        if value.get_secret_value() == demo_value
    ]
    if demo:
        raise ConfigurationError(
            f"{' and '.join(demo)} still hold the demo value, which only the local emulator accepts; "
            f"set the real credentials, or point ISOMETRIC_BASE_URL at the emulator (host {parts.hostname!r} "
            "is not loopback)",
            registry=REGISTRY_NAME,
        )
    if parts.scheme != "https":
        raise ConfigurationError(
            f"ISOMETRIC_BASE_URL must use https for a non-loopback host ({parts.hostname!r}): "
            "the credentials would travel in clear text",
            registry=REGISTRY_NAME,
        )


def _resource(name: str) -> _Resource:
    try:
        return RESOURCES[name]
    except KeyError:
        raise ValueError(f"unknown resource {name!r}; known: {', '.join(sorted(RESOURCES))}") from None


def _fill(template: str, path_params: Mapping[str, str]) -> str:
    """The template with each `{name}` replaced by its URL-quoted value."""
    return template.format_map({k: quote(str(v), safe="") for k, v in path_params.items()})


def _json_or_none(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _registry_message(body: Any, response: httpx.Response, secrets: tuple[str, ...]) -> str:
    """The registry's own words, shortened and redacted."""
    if isinstance(body, dict) and "detail" in body:
        detail = body["detail"]
        text = summarize_detail(detail) if isinstance(detail, list) else str(detail)
    elif isinstance(body, dict) and ("message" in body or "error" in body):
        text = str(body.get("message") or body.get("error"))
    else:
        text = response.text.strip() or response.reason_phrase or "no body"
    text = " ".join(text.split())
    if len(text) > 500:
        text = text[:500] + "…"
    return redact(text, secrets)


def _redact_obj(value: Any, secrets: tuple[str, ...]) -> Any:
    if isinstance(value, str):
        return redact(value, secrets)
    if isinstance(value, list):
        return [_redact_obj(v, secrets) for v in value]
    if isinstance(value, dict):
        return {k: _redact_obj(v, secrets) for k, v in value.items()}
    return value
