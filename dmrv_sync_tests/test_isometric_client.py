"""IsometricClient against httpx.MockTransport: error types, retry rules, paging, finding again, config.

Every request the client sends here (and every mocked answer) is checked against the Certify spec by
`contract_recorder`, so the mocks cannot drift from the wire format either.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from dmrv_sync.registries.budget import UnlimitedBudget
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
)
from dmrv_sync.registries.isometric import (
    CreateBiocharApplicationRequest,
    CreateGhgEntryRequest,
    CreateGhgStatementRequest,
    CreateProductionBatchRequest,
    CreateStorageLocationRequest,
    GhgEntry,
    IsometricClient,
    ProductionBatch,
    RequestRecord,
    ResubmitGhgStatementRequest,
    ScalarQuantity,
    StorageMethod,
    SubmitGhgStatementRequest,
    UpdateStorageLocationRequest,
    parse_retry_after,
)
from dmrv_sync.settings import DEMO_ACCESS_TOKEN, DEMO_CLIENT_SECRET, Settings
from dmrv_sync_tests.fixtures.contract import ContractRecorder

BASE_URL = "http://127.0.0.1:8999/mrv/v0"
PROJECT_ID = "prj_1CTWZQGKE1S0VAXA"
SECRET = "cs-SECRET-7f3a9c2e11"
TOKEN = "tok-SECRET-bearer-55d0e8"

Handler = Callable[[httpx.Request], httpx.Response]


# --- spec-shaped objects -------------------------------------------------------------------------


def _id(prefix: str, n: int) -> str:
    return f"{prefix}_1TEST{n:011d}"  # 20 characters, like the real ones


def quantity(magnitude: float, unit: str = "t") -> dict[str, Any]:
    return {"magnitude": magnitude, "unit": unit, "standard_deviation": None}


def production_batch(n: int = 1, ref: str | None = "pr-1") -> dict[str, Any]:
    return {
        "id": _id("ptb", n),
        "facility_id": _id("fcl", 1),
        "feedstock_type_ids": [_id("ftt", 1)],
        "supplier_reference_id": ref,
        "kind": "biochar",
        "started_at": "2026-01-01T00:00:00Z",
        "ended_at": "2026-01-02T00:00:00Z",
        "uploaded_at": "2026-01-03T00:00:00Z",
        "display_name": f"batch {n}",
        "mass": quantity(10),
    }


def ghg_entry(n: int = 1, ref: str | None = "cb-1") -> dict[str, Any]:
    return {
        "id": _id("rmv", n),
        "supplier_reference_id": ref,
        "started_on": "2026-01-01",
        "completed_on": "2026-01-31",
        "co2e_net_removed_kg": 100.0,
        "co2e_net_removed_without_discount_kg": 110.0,
        "co2e_net_removed_standard_deviation_kg": None,
        "ghg_statement_id": None,
        "feedstock_type_id": None,
    }


def feedstock_type(n: int = 1, ref: str | None = "fs-1") -> dict[str, Any]:
    return {"id": _id("ftt", n), "supplier_reference_id": ref, "name": "wood chips"}


def storage_location(n: int = 1, ref: str | None = "ap-1") -> dict[str, Any]:
    return {
        "id": _id("slc", n),
        "name": "field",
        "project_id": PROJECT_ID,
        "supplier_id": _id("spl", 1),
        "storage_method": "biochar_field",
        "latitude": 52.0,
        "longitude": 4.0,
        "description": None,
        "supplier_reference_id": ref,
    }


def biochar_application(n: int = 1, ref: str | None = "ap-1") -> dict[str, Any]:
    return {
        "id": _id("bse", n),
        "storage_location_id": _id("slc", 1),
        "production_batch_id": _id("ptb", 1),
        "removal_id": None,
        "supplier_reference_id": ref,
        "application_date": "2026-02-01",
        "uploaded_at": "2026-02-02T00:00:00Z",
        "truck_mass_on_arrival": quantity(20),
        "truck_mass_on_departure": quantity(10),
        "average_application_rate": quantity(5, "t/ha"),
    }


def ghg_statement(n: int = 1, end: str = "2026-03-31", status: str = "DRAFT") -> dict[str, Any]:
    return {
        "id": _id("ggs", n),
        "project_id": PROJECT_ID,
        "verifier": None,
        "ghg_entry_ids": [],
        "ghg_statement_report_url": None,
        "status": status,
        "reporting_period_start_at": "2026-01-01",
        "reporting_period_end_at": end,
        "submitted_at": None,
        "credits_issued_at": None,
        "pending_total_co2e_removed_kg": None,
    }


def page(nodes: list[dict[str, Any]], cursor: str | None = None) -> dict[str, Any]:
    return {
        "nodes": nodes,
        "total_count": len(nodes),
        "page_info": {
            "has_next_page": cursor is not None,
            "end_cursor": cursor,
            "has_previous_page": False,
            "start_cursor": None,
        },
    }


def create_production_batch_request(ref: str = "pr-1") -> CreateProductionBatchRequest:
    return CreateProductionBatchRequest(
        facility_id=_id("fcl", 1),
        feedstock_type_ids=[_id("ftt", 1)],
        supplier_reference_id=ref,
        started_at=datetime(2026, 1, 1, tzinfo=UTC),
        ended_at=datetime(2026, 1, 2, tzinfo=UTC),
        mass=ScalarQuantity(magnitude=10, unit="t"),
    )


# --- harness -------------------------------------------------------------------------------------


class Server:
    """A scripted MockTransport: answers from a queue (or a function), counts what it got."""

    def __init__(self, *answers: httpx.Response | Exception | Handler) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            raise answer
        if callable(answer) and not isinstance(answer, httpx.Response):
            return answer(request)
        return answer

    def sent(self, method: str | None = None) -> int:
        return sum(1 for r in self.requests if method is None or r.method == method)


class CountingBudget:
    def __init__(self) -> None:
        self.acquired = 0

    def acquire(self) -> None:
        self.acquired += 1


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def make_client(sleeps: list[float], contract_recorder: ContractRecorder) -> Callable[..., IsometricClient]:
    def make(server: Server, **kwargs: Any) -> IsometricClient:
        options: dict[str, Any] = {
            "base_url": BASE_URL,
            "client_secret": SECRET,
            "access_token": TOKEN,
            "project_id": PROJECT_ID,
            "budget": UnlimitedBudget(),
            "sleep": sleeps.append,
            "jitter": lambda low, high: high,  # deterministic: the top of the full-jitter window
            "transport": httpx.MockTransport(server),
            "event_hooks": contract_recorder.event_hooks,
            "max_attempts": 4,
        }
        options.update(kwargs)
        return IsometricClient(**options)

    return make


def json_response(status: int, body: Any, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(status, json=body, headers=headers)


# --- success path --------------------------------------------------------------------------------


def test_create_sends_both_credentials_and_the_wire_body(make_client: Callable[..., IsometricClient]) -> None:
    server = Server(json_response(200, production_batch()))
    client = make_client(server)

    batch = client.create_production_batch(create_production_batch_request())

    assert isinstance(batch, ProductionBatch)
    assert batch.id == _id("ptb", 1)
    (request,) = server.requests
    assert request.method == "POST"
    assert request.url.path == "/mrv/v0/production_batches"
    assert request.headers["X-Client-Secret"] == SECRET
    assert request.headers["Authorization"] == f"Bearer {TOKEN}"
    body = json.loads(request.content)
    assert body["kind"] == "biochar"
    assert body["started_at"] == "2026-01-01T00:00:00Z"
    assert "display_name" not in body  # optional and unset: omitted, not null


def test_response_models_tolerate_unknown_fields(make_client: Callable[..., IsometricClient]) -> None:
    server = Server(json_response(200, {**ghg_entry(), "added_later": {"x": 1}}))
    entry = make_client(server).get_ghg_entry(_id("rmv", 1))
    assert entry.model_extra == {"added_later": {"x": 1}}


def test_storage_location_paths_carry_the_project(make_client: Callable[..., IsometricClient]) -> None:
    server = Server(json_response(200, storage_location()))
    client = make_client(server)
    client.create_storage_location(
        CreateStorageLocationRequest(
            project_id=PROJECT_ID,
            name="field",
            latitude=52.0,
            longitude=4.0,
            storage_method=StorageMethod.BIOCHAR_FIELD,
            supplier_reference_id="ap-1",
        )
    )
    client.update_storage_location(_id("slc", 1), UpdateStorageLocationRequest(name="field 2"))
    client.get_storage_location(_id("slc", 1))
    paths = [(r.method, r.url.path) for r in server.requests]
    assert paths == [
        ("POST", f"/mrv/v0/projects/{PROJECT_ID}/storage_locations"),
        ("PATCH", f"/mrv/v0/projects/{PROJECT_ID}/storage_locations/{_id('slc', 1)}"),
        ("GET", f"/mrv/v0/projects/{PROJECT_ID}/storage_locations/{_id('slc', 1)}"),
    ]
    assert json.loads(server.requests[1].content) == {"name": "field 2"}


def test_every_create_and_read_parses(make_client: Callable[..., IsometricClient]) -> None:
    def route(request: httpx.Request) -> httpx.Response:
        path = request.url.path.removeprefix("/mrv/v0")
        if path.startswith("/biochar_applications"):
            return json_response(200, biochar_application())
        if path.startswith("/ghg_entries"):
            return json_response(200, ghg_entry())
        if path.startswith("/ghg_statements"):
            return json_response(200, ghg_statement())
        if path.startswith("/production_batches"):
            return json_response(200, production_batch())
        if request.method == "DELETE":
            return httpx.Response(204)
        return json_response(404, {"detail": "Not Found"})

    client = make_client(Server(route))
    application = client.create_biochar_application(
        CreateBiocharApplicationRequest(
            project_id=PROJECT_ID,
            production_batch_id=_id("ptb", 1),
            storage_site_id=_id("slc", 1),
            application_date=date(2026, 2, 1),
            average_application_rate=ScalarQuantity(magnitude=5, unit="t/ha"),
            truck_mass_on_arrival=ScalarQuantity(magnitude=20, unit="t"),
            truck_mass_on_departure=ScalarQuantity(magnitude=10, unit="t"),
            supplier_reference_id="ap-1",
        )
    )
    assert application.storage_location_id == _id("slc", 1)
    assert client.get_biochar_application(application.id).id == application.id
    entry = client.create_ghg_entry(
        CreateGhgEntryRequest(
            project_id=PROJECT_ID,
            supplier_reference_id="cb-1",
            started_on=date(2026, 1, 1),
            completed_on=date(2026, 1, 31),
            ghg_entry_template_id=_id("rvt", 1),
            ghg_entry_template_components=[],
        )
    )
    assert isinstance(entry, GhgEntry)
    statement = client.create_ghg_statement(
        CreateGhgStatementRequest(project_id=PROJECT_ID, end_on=date(2026, 3, 31))
    )
    assert statement.status == "DRAFT"
    client.submit_ghg_statement(
        statement.id, SubmitGhgStatementRequest(ghg_statement_report_url="https://x/r.pdf")
    )
    client.submit_ghg_statement(
        statement.id,
        ResubmitGhgStatementRequest(ghg_statement_report_url="https://x/r2.pdf", summary_of_changes="fixed"),
    )
    assert client.get_ghg_statement(statement.id).reporting_period_end_at == date(2026, 3, 31)
    assert client.get_production_batch(_id("ptb", 1)).mass == ScalarQuantity(magnitude=10, unit="t")


def test_request_models_refuse_naive_datetimes_and_unknown_fields() -> None:
    with pytest.raises(ValidationError):
        CreateProductionBatchRequest(
            facility_id=_id("fcl", 1),
            feedstock_type_ids=[],
            supplier_reference_id="x",
            started_at=datetime(2026, 1, 1),  # naive: ambiguous on the wire
            ended_at=datetime(2026, 1, 2, tzinfo=UTC),
            mass=ScalarQuantity(magnitude=1, unit="t"),
        )
    with pytest.raises(ValidationError):
        CreateGhgStatementRequest(project_id=PROJECT_ID, end_on=date(2026, 1, 1), removal_ids=[])  # type: ignore[call-arg]


# --- error types ---------------------------------------------------------------------------------


def test_422_is_validation_rejected_with_the_registry_detail(
    make_client: Callable[..., IsometricClient],
) -> None:
    detail = [
        {
            "loc": ["body", "mass", "magnitude"],
            "msg": "Input should be greater than 0",
            "type": "greater_than",
            "input": -1,
        },
        {"loc": ["body", "facility_id"], "msg": "Facility not found", "type": "value_error"},
    ]
    server = Server(json_response(422, {"detail": detail}))
    with pytest.raises(ValidationRejected) as caught:
        make_client(server).create_production_batch(create_production_batch_request())
    error = caught.value
    assert server.sent() == 1
    assert (error.status_code, error.method, error.path) == (422, "POST", "/production_batches")
    assert error.detail == detail
    assert error.summary == (
        "body.mass.magnitude: Input should be greater than 0; body.facility_id: Facility not found"
    )
    assert "body.facility_id: Facility not found" in str(error)
    assert error.permanent and not error.retryable


@pytest.mark.parametrize(
    ("status", "error_type"),
    [
        (400, ValidationRejected),
        (401, AuthError),
        (403, AuthError),
        (404, NotFound),
        (409, UnexpectedResponse),
    ],
)
def test_permanent_statuses_are_typed_and_not_retried(
    make_client: Callable[..., IsometricClient], status: int, error_type: type[RegistryError]
) -> None:
    server = Server(json_response(status, {"detail": "nope"}))
    with pytest.raises(error_type) as caught:
        make_client(server).get_ghg_entry(_id("rmv", 1))
    assert server.sent() == 1
    assert caught.value.status_code == status
    assert caught.value.permanent
    assert "nope" in str(caught.value)


def test_auth_error_names_the_settings_to_check(make_client: Callable[..., IsometricClient]) -> None:
    with pytest.raises(AuthError, match="ISOMETRIC_ACCESS_TOKEN"):
        make_client(Server(json_response(401, {"detail": "Invalid token"}))).get_ghg_entry(_id("rmv", 1))


# --- retry rules ---------------------------------------------------------------------------------


def test_post_with_read_timeout_is_outcome_unknown_and_sent_once(
    make_client: Callable[..., IsometricClient], sleeps: list[float]
) -> None:
    server = Server(httpx.ReadTimeout("timed out"), json_response(200, production_batch()))
    with pytest.raises(OutcomeUnknown) as caught:
        make_client(server).create_production_batch(create_production_batch_request())
    assert server.sent("POST") == 1
    assert sleeps == []
    assert caught.value.needs_reconciliation and not caught.value.retryable
    assert not isinstance(caught.value, TransientError)


@pytest.mark.parametrize(
    "failure",
    [
        httpx.RemoteProtocolError("Server disconnected without sending a response."),
        httpx.ReadError("connection reset by peer"),
        httpx.WriteTimeout("write timed out"),
        json_response(500, {"detail": "Internal Server Error"}),
        json_response(502, {"detail": "Bad Gateway"}),
        json_response(503, {"detail": "Service Unavailable"}),
        json_response(504, {"detail": "Gateway Timeout"}),
    ],
    ids=lambda f: type(f).__name__ if isinstance(f, Exception) else f"http{f.status_code}",
)
def test_post_whose_answer_is_lost_is_never_resent(
    make_client: Callable[..., IsometricClient], failure: httpx.Response | Exception
) -> None:
    server = Server(failure, json_response(200, ghg_statement()))
    with pytest.raises(OutcomeUnknown):
        make_client(server).create_ghg_statement(
            CreateGhgStatementRequest(project_id=PROJECT_ID, end_on=date(2026, 3, 31))
        )
    assert server.sent() == 1


def test_post_with_connect_error_is_retried(
    make_client: Callable[..., IsometricClient], sleeps: list[float]
) -> None:
    server = Server(
        httpx.ConnectError("connection refused"),
        httpx.ConnectTimeout("connect timed out"),
        json_response(200, production_batch()),
    )
    batch = make_client(server).create_production_batch(create_production_batch_request())
    assert batch.id == _id("ptb", 1)
    assert server.sent("POST") == 3
    assert sleeps == [0.5, 1.0]  # base * 2^(attempt-1), top of the jitter window


def test_post_connect_errors_exhaust_into_transient_error(
    make_client: Callable[..., IsometricClient],
) -> None:
    server = Server(httpx.ConnectError("connection refused"))
    with pytest.raises(TransientError, match="not sent"):
        make_client(server, max_attempts=3).create_production_batch(create_production_batch_request())
    assert server.sent() == 3


def test_get_is_retried_on_503_then_succeeds(
    make_client: Callable[..., IsometricClient], sleeps: list[float]
) -> None:
    server = Server(
        json_response(503, {"detail": "busy"}), json_response(503, {}), json_response(200, ghg_entry())
    )
    assert make_client(server).get_ghg_entry(_id("rmv", 1)).id == _id("rmv", 1)
    assert server.sent() == 3
    assert sleeps == [0.5, 1.0]


@pytest.mark.parametrize(
    "failure",
    [json_response(500, {}), httpx.ReadTimeout("slow"), httpx.RemoteProtocolError("dropped")],
    ids=["500", "ReadTimeout", "RemoteProtocolError"],
)
def test_get_gives_up_after_max_attempts_with_transient_error(
    make_client: Callable[..., IsometricClient], sleeps: list[float], failure: httpx.Response | Exception
) -> None:
    server = Server(failure)
    with pytest.raises(TransientError):
        make_client(server, max_attempts=4).get_ghg_statement(_id("ggs", 1))
    assert server.sent() == 4
    assert len(sleeps) == 3


def test_patch_is_idempotent_and_retried_on_5xx(make_client: Callable[..., IsometricClient]) -> None:
    server = Server(json_response(502, {}), json_response(200, storage_location()))
    make_client(server).update_storage_location(_id("slc", 1), UpdateStorageLocationRequest(latitude=10))
    assert server.sent("PATCH") == 2


def test_429_honours_numeric_retry_after_even_for_posts(
    make_client: Callable[..., IsometricClient], sleeps: list[float]
) -> None:
    server = Server(
        json_response(429, {"detail": "slow down"}, {"Retry-After": "7"}),
        json_response(200, production_batch()),
    )
    make_client(server).create_production_batch(create_production_batch_request())
    assert server.sent("POST") == 2
    assert sleeps == [7.0]


def test_429_honours_http_date_retry_after(
    make_client: Callable[..., IsometricClient], sleeps: list[float]
) -> None:
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    server = Server(json_response(429, {}, {"Retry-After": when}), json_response(200, ghg_entry()))
    make_client(server).get_ghg_entry(_id("rmv", 1))
    assert len(sleeps) == 1 and 25 <= sleeps[0] <= 30


def test_429_without_retry_after_backs_off_and_finally_raises_rate_limited(
    make_client: Callable[..., IsometricClient], sleeps: list[float]
) -> None:
    server = Server(json_response(429, {}))
    with pytest.raises(RateLimited) as caught:
        make_client(server, max_attempts=5, backoff_base=1.0, backoff_cap=3.0).get_ghg_entry(_id("rmv", 1))
    assert server.sent() == 5
    assert sleeps == [1.0, 2.0, 3.0, 3.0]  # exponential, capped
    assert caught.value.retryable


def test_retry_after_beyond_the_limit_is_raised_not_slept(
    make_client: Callable[..., IsometricClient], sleeps: list[float]
) -> None:
    server = Server(json_response(429, {}, {"Retry-After": "3600"}))
    with pytest.raises(RateLimited) as caught:
        make_client(server, max_retry_after=60).get_ghg_entry(_id("rmv", 1))
    assert server.sent() == 1 and sleeps == []
    assert caught.value.retry_after == 3600


def test_full_jitter_draws_from_zero_to_the_exponential_bound(sleeps: list[float]) -> None:
    windows: list[tuple[float, float]] = []

    def jitter(low: float, high: float) -> float:
        windows.append((low, high))
        return high / 2

    server = Server(json_response(503, {}))
    client = IsometricClient(
        base_url=BASE_URL, client_secret=SECRET, access_token=TOKEN, project_id=PROJECT_ID,
        budget=UnlimitedBudget(), sleep=sleeps.append, jitter=jitter, transport=httpx.MockTransport(server),
        max_attempts=4, backoff_base=0.25,
    )  # fmt: skip
    with pytest.raises(TransientError):
        client.get_ghg_entry(_id("rmv", 1))
    assert windows == [(0.0, 0.25), (0.0, 0.5), (0.0, 1.0)]
    assert sleeps == [0.125, 0.25, 0.5]


def test_every_attempt_takes_a_budget_slot(make_client: Callable[..., IsometricClient]) -> None:
    budget = CountingBudget()
    server = Server(httpx.ConnectError("refused"), json_response(503, {}), json_response(200, ghg_entry()))
    make_client(server, budget=budget).get_ghg_entry(_id("rmv", 1))
    assert budget.acquired == 3 == server.sent()


def test_unreadable_create_answer_is_outcome_unknown(
    make_client: Callable[..., IsometricClient], contract_recorder: ContractRecorder
) -> None:
    contract_recorder.validate_responses = False  # the answers are broken on purpose
    server = Server(httpx.Response(200, text="<html>oops</html>"))
    with pytest.raises(OutcomeUnknown, match="not a ProductionBatch"):
        make_client(server).create_production_batch(create_production_batch_request())
    server = Server(httpx.Response(200, json={"no_id": True}))
    with pytest.raises(UnexpectedResponse):
        make_client(server).get_production_batch(_id("ptb", 1))


def test_observer_gets_one_record_per_attempt(make_client: Callable[..., IsometricClient]) -> None:
    records: list[RequestRecord] = []
    server = Server(json_response(503, {}), json_response(200, ghg_entry()))
    make_client(server, observer=records.append).get_ghg_entry(_id("rmv", 1))
    assert [(r.method, r.path, r.status_code, r.outcome, r.attempt, r.will_retry) for r in records] == [
        ("GET", "/ghg_entries/{id}", 503, "error", 1, True),
        ("GET", "/ghg_entries/{id}", 200, "ok", 2, False),
    ]
    assert records[0].error and "server error" in records[0].error
    assert all(r.duration_ms >= 0 for r in records)


def test_observer_outcome_unknown_and_failing_observer_is_harmless(
    make_client: Callable[..., IsometricClient],
) -> None:
    records: list[RequestRecord] = []
    server = Server(httpx.ReadTimeout("slow"))
    with pytest.raises(OutcomeUnknown):
        make_client(server, observer=records.append).create_production_batch(
            create_production_batch_request()
        )
    assert [(r.outcome, r.status_code) for r in records] == [("unknown", None)]

    def broken(record: RequestRecord) -> None:
        raise RuntimeError("audit table locked")

    batch = make_client(Server(json_response(200, production_batch())), observer=broken).get_production_batch(
        _id("ptb", 1)
    )
    assert batch.id == _id("ptb", 1)


# --- pagination and finding again ----------------------------------------------------------------


def test_paginate_follows_cursors_with_the_maximum_page_size(
    make_client: Callable[..., IsometricClient],
) -> None:
    pages = {
        None: page([production_batch(1, "a"), production_batch(2, "b")], "c1"),
        "c1": page([production_batch(3, "c")], "c2"),
        "c2": page([production_batch(4, "d")]),
    }
    server = Server(lambda r: json_response(200, pages[r.url.params.get("after")]))
    refs = [n["supplier_reference_id"] for n in make_client(server).paginate("/production_batches")]
    assert refs == ["a", "b", "c", "d"]
    assert [r.url.params.get("first") for r in server.requests] == ["50", "50", "50"]
    assert [r.url.params.get("after") for r in server.requests] == [None, "c1", "c2"]


def test_paginate_refuses_a_repeated_cursor(make_client: Callable[..., IsometricClient]) -> None:
    server = Server(lambda r: json_response(200, page([production_batch(1, "a")], "same")))
    with pytest.raises(UnexpectedResponse, match="repeated"):
        list(make_client(server).paginate("/production_batches"))


def test_find_by_reference_uses_the_filter_where_there_is_one(
    make_client: Callable[..., IsometricClient],
) -> None:
    # The second node does not carry the reference: a registry that ignored the filter must not
    # make us adopt someone else's object.
    server = Server(json_response(200, page([ghg_entry(7, "cb-9"), ghg_entry(8, "cb-other")])))
    found = make_client(server).find_by_supplier_reference("ghg_entries", "cb-9")
    assert isinstance(found, GhgEntry) and found.id == _id("rmv", 7)
    (request,) = server.requests
    assert request.url.path == "/mrv/v0/ghg_entries"
    assert request.url.params["supplier_reference_id"] == "cb-9"

    server = Server(json_response(200, page([ghg_entry(8, "cb-other")])))
    assert make_client(server).find_by_supplier_reference("ghg_entries", "cb-9") is None


def test_find_by_reference_pages_where_there_is_no_filter(
    make_client: Callable[..., IsometricClient],
) -> None:
    pages = {
        None: page([production_batch(1, "a"), production_batch(2, "b")], "c1"),
        "c1": page([production_batch(3, "target")], "c2"),
        "c2": page([production_batch(4, "d")]),
    }
    server = Server(lambda r: json_response(200, pages[r.url.params.get("after")]))
    found = make_client(server).find_by_supplier_reference("production_batches", "target")
    assert isinstance(found, ProductionBatch) and found.id == _id("ptb", 3)
    assert server.sent() == 2  # stopped at the page that held it
    assert all("supplier_reference_id" not in r.url.params for r in server.requests)


def test_find_many_settles_many_references_in_one_listing_pass(
    make_client: Callable[..., IsometricClient],
) -> None:
    pages = {
        None: page([biochar_application(1, "ap-1"), biochar_application(2, "ap-x")], "c1"),
        "c1": page([biochar_application(3, "ap-3")], "c2"),
        "c2": page([biochar_application(4, "ap-4")]),
    }
    server = Server(lambda r: json_response(200, pages[r.url.params.get("after")]))
    found = make_client(server).find_many_by_supplier_reference(
        "biochar_applications", ["ap-1", "ap-3", "ap-404"]
    )
    assert {ref: obj.id for ref, obj in found.items()} == {"ap-1": _id("bse", 1), "ap-3": _id("bse", 3)}  # type: ignore[attr-defined]
    assert server.sent() == 3  # one pass; ap-404 forced it to the end


def test_find_storage_locations_pages_under_the_project(make_client: Callable[..., IsometricClient]) -> None:
    server = Server(json_response(200, page([storage_location(1, "ap-1")])))
    assert make_client(server).find_by_supplier_reference("storage_locations", "ap-1") is not None
    assert server.requests[0].url.path == f"/mrv/v0/projects/{PROJECT_ID}/storage_locations"


def test_find_by_reference_rejects_unknown_resources(make_client: Callable[..., IsometricClient]) -> None:
    with pytest.raises(ValueError, match="unknown resource"):
        make_client(Server(json_response(200, page([])))).find_by_supplier_reference("facilities", "x")


def test_feedstock_type_by_reference(make_client: Callable[..., IsometricClient]) -> None:
    server = Server(json_response(200, page([feedstock_type(1, "fs-1")])))
    assert make_client(server).get_feedstock_type_by_reference("fs-1").id == _id("ftt", 1)
    assert server.requests[0].url.params["supplier_reference_id"] == "fs-1"
    with pytest.raises(NotFound, match="web app"):
        make_client(Server(json_response(200, page([])))).get_feedstock_type_by_reference("fs-2")


def test_ghg_statement_is_found_by_its_natural_key(make_client: Callable[..., IsometricClient]) -> None:
    other_project = {**ghg_statement(3, "2026-06-30"), "project_id": "prj_1OTHERPROJECT0001"}
    server = Server(
        json_response(
            200, page([ghg_statement(1, "2026-03-31"), other_project, ghg_statement(2, "2026-06-30")])
        )
    )
    client = make_client(server)
    found = client.find_ghg_statement(date(2026, 6, 30))
    assert found is not None and found.id == _id("ggs", 2)
    assert client.find_ghg_statement(date(2026, 9, 30)) is None
    assert len(client.list_ghg_statements()) == 3


# --- configuration -------------------------------------------------------------------------------


@pytest.mark.parametrize("url", ["https://api.sandbox.isometric.com/mrv/v0", "http://10.0.0.5:8000/mrv/v0"])
def test_demo_credentials_are_refused_for_a_non_loopback_host(url: str) -> None:
    with pytest.raises(ConfigurationError, match="ISOMETRIC_CLIENT_SECRET and ISOMETRIC_ACCESS_TOKEN"):
        IsometricClient(
            base_url=url, client_secret=DEMO_CLIENT_SECRET, access_token=DEMO_ACCESS_TOKEN,
            project_id=PROJECT_ID, budget=UnlimitedBudget(),
        )  # fmt: skip
    with pytest.raises(ConfigurationError, match="ISOMETRIC_ACCESS_TOKEN still holds|ISOMETRIC_ACCESS_TOKEN"):
        IsometricClient(
            base_url=url, client_secret=SECRET, access_token=DEMO_ACCESS_TOKEN,
            project_id=PROJECT_ID, budget=UnlimitedBudget(),
        )  # fmt: skip


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:8000/mrv/v0", "http://localhost:8000/mrv/v0", "http://[::1]:8000/mrv/v0"]
)
def test_demo_credentials_are_fine_on_loopback(url: str) -> None:
    client = IsometricClient(
        base_url=url, client_secret=DEMO_CLIENT_SECRET, access_token=DEMO_ACCESS_TOKEN,
        project_id=PROJECT_ID, budget=UnlimitedBudget(),
    )  # fmt: skip
    client.close()


def test_real_credentials_need_https_and_values() -> None:
    with pytest.raises(ConfigurationError, match="https"):
        IsometricClient(
            base_url="http://api.isometric.com/mrv/v0", client_secret=SECRET, access_token=TOKEN,
            project_id=PROJECT_ID, budget=UnlimitedBudget(),
        )  # fmt: skip
    with pytest.raises(ConfigurationError, match="ISOMETRIC_CLIENT_SECRET is empty"):
        IsometricClient(
            base_url=BASE_URL,
            client_secret="",
            access_token=TOKEN,
            project_id=PROJECT_ID,
            budget=UnlimitedBudget(),
        )


def test_from_settings_uses_the_configured_url_and_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = Settings(
        isometric_base_url="http://127.0.0.1:8999/mrv/v0/",
        isometric_client_secret=SECRET,
        isometric_access_token=TOKEN,
        _env_file=None,
    )
    server = Server(json_response(200, ghg_entry()))
    client = IsometricClient.from_settings(
        settings, budget=UnlimitedBudget(), transport=httpx.MockTransport(server)
    )
    client.get_ghg_entry(_id("rmv", 1))
    assert str(server.requests[0].url).startswith("http://127.0.0.1:8999/mrv/v0/ghg_entries/")
    assert server.requests[0].headers["X-Client-Secret"] == SECRET
    assert client.project_id == settings.isometric_project_id


def test_from_settings_refuses_demo_credentials_against_the_sandbox() -> None:
    settings = Settings(isometric_environment="sandbox", _env_file=None)
    with pytest.raises(ConfigurationError, match="ISOMETRIC_BASE_URL"):
        IsometricClient.from_settings(settings, budget=UnlimitedBudget())


def test_parse_retry_after() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert parse_retry_after("12") == 12.0
    assert parse_retry_after("1.5") == 1.5
    assert parse_retry_after("-3") == 0.0
    assert parse_retry_after(format_datetime(now + timedelta(seconds=90), usegmt=True), now=now) == 90.0
    assert parse_retry_after(format_datetime(now - timedelta(seconds=90), usegmt=True), now=now) == 0.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None


# --- secrets -------------------------------------------------------------------------------------


def test_secrets_never_leak_into_logs_errors_reprs_or_records(
    make_client: Callable[..., IsometricClient], caplog: pytest.LogCaptureFixture
) -> None:
    """A hostile registry echoes our headers back in every error body: none of it may escape."""

    def echo(status: int) -> Handler:
        def answer(request: httpx.Request) -> httpx.Response:
            headers = dict(request.headers)
            detail = [
                {"loc": ["header", "x-client-secret"], "msg": f"bad {headers}", "type": "x", "input": headers}
            ]
            body = {"detail": detail} if status == 422 else {"detail": f"echo {headers}"}
            return json_response(status, body, {"Retry-After": "0"})

        return answer

    records: list[RequestRecord] = []
    texts: list[str] = []
    caplog.set_level(logging.DEBUG)  # every logger: ours, httpx, httpcore
    for status in (422, 401, 403, 404, 409, 429, 500, 503):
        client = make_client(Server(echo(status)), observer=records.append, max_attempts=2)
        texts.append(repr(client))
        for call in (
            lambda c=client: c.get_ghg_entry(_id("rmv", 1)),
            lambda c=client: c.create_production_batch(create_production_batch_request()),
        ):
            with pytest.raises(RegistryError) as caught:
                call()
            error = caught.value
            texts += [str(error), repr(error), str(error.args)]
            if isinstance(error, ValidationRejected):
                texts += [json.dumps(error.detail), error.summary]
    for failure in (httpx.ReadTimeout(f"timeout {SECRET}"), httpx.ConnectError(f"refused {TOKEN}")):
        client = make_client(Server(failure), observer=records.append, max_attempts=2)
        with pytest.raises(RegistryError) as caught:
            client.create_production_batch(create_production_batch_request())
        texts += [str(caught.value), repr(caught.value)]
    texts += [repr(r) for r in records]
    texts.append(caplog.text)
    texts += [str(r.args) for r in caplog.records]

    everything = "\n".join(texts)
    assert "***" in everything  # the echo really carried the secrets, and they were masked
    assert SECRET not in everything
    assert TOKEN not in everything
