"""The HTTP side: a threading stdlib server on loopback, the fault pipeline, and `EmulatorServer`.

The stdlib server is used (not an ASGI framework) because faults must act on the TCP connection
itself: a reset is SO_LINGER(1, 0) + close, which sends an RST; a dropped answer closes the
connection without a response.

Order of a /mrv/v0 request: route match and counting -> the rate limit's decision (at arrival) -> latency
-> connection reset -> the rate limit's 429 -> server error (5xx) -> 404/405 -> authentication (401; every
request while `credentials_revoked`) -> 422 rules -> the handler -> lost response (only after a 2xx: the
object exists, the answer is dropped or delayed) -> answer.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import logging
import socket
import struct
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from dmrv_sync.emulator.admin import ADMIN_PREFIX, AdminApi, provision_feedstock_type
from dmrv_sync.emulator.app import Request, Response, Router
from dmrv_sync.emulator.config import EmulatorConfig
from dmrv_sync.emulator.errors import ApiError
from dmrv_sync.emulator.faults import FaultInjector
from dmrv_sync.emulator.handlers import CertifyApi
from dmrv_sync.emulator.lifecycle import AutoVerifier
from dmrv_sync.emulator.stats import RequestCounters
from dmrv_sync.emulator.store import Store

API_PREFIX = "/mrv/v0"
logger = logging.getLogger("dmrv_sync.emulator")


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], emulator: EmulatorServer) -> None:
        self.emulator = emulator
        # Open connections, so stop() can end idle keep-alive connections instead of leaving them hanging.
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()
        super().__init__(address, _RequestHandler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self.connections_lock:
            self.connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self.connections_lock:
            self.connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        with self.connections_lock:
            for connection in list(self.connections):
                with contextlib.suppress(OSError):
                    connection.shutdown(socket.SHUT_RDWR)


class _RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as clients pool connections
    # Headers and body are two writes; with Nagle's algorithm the client's delayed ACK adds ~40 ms each.
    disable_nagle_algorithm = True
    server: _HTTPServer

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def do_PATCH(self) -> None:
        self._handle()

    def do_DELETE(self) -> None:
        self._handle()

    def do_PUT(self) -> None:
        self._handle()

    # The base class logs every request line with the client's details; the emulator logs its own
    # line per request instead, never with headers (they carry the credentials).
    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug(format, *args)

    # --- plumbing ------------------------------------------------------------------------------

    def _read_body(self) -> bytes:
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = 0
        return self.rfile.read(length) if length > 0 else b""

    def _send(self, response: Response) -> None:
        payload = b"" if response.body is None else json.dumps(response.body).encode()
        try:
            self.send_response(response.status)
            if response.body is not None:
                self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            for name, value in response.headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(payload)
        except OSError:  # the client gave up (e.g. after its timeout, on a delayed answer)
            self.close_connection = True

    def _close_socket(self, *, reset: bool) -> None:
        """End the connection without an answer: RST (reset) or an orderly FIN (drop)."""
        self.close_connection = True
        connection = self.connection
        try:
            if reset:
                connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            else:
                connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        # detach + close ends the descriptor now; socket.close() would wait for the handler's files.
        socket.close(connection.detach())

    # --- dispatch ------------------------------------------------------------------------------

    def _handle(self) -> None:
        started = self._arrived_at = time.monotonic()
        parts = urlsplit(self.path)
        query = {name: values[-1] for name, values in parse_qs(parts.query, keep_blank_values=True).items()}
        body = self._read_body()
        if parts.path.startswith(ADMIN_PREFIX + "/"):
            request = Request(self.command, parts.path[len(ADMIN_PREFIX) :], query, body)
            outcome = self._answer_admin(request)
        elif parts.path == API_PREFIX or parts.path.startswith(API_PREFIX + "/"):
            request = Request(self.command, parts.path[len(API_PREFIX) :] or "/", query, body)
            outcome = self._answer_api(request)
        else:
            outcome = self._respond(Response(404, {"detail": "Not Found"}), counted=False)
        elapsed_ms = (time.monotonic() - started) * 1000
        logger.info("%s %s -> %s (%.0f ms)", self.command, self.path, outcome, elapsed_ms)

    def _respond(self, response: Response, *, counted: bool) -> str:
        if counted:
            self.server.emulator.counters.record_status(response.status)
        self._send(response)
        return str(response.status)

    def _answer_admin(self, request: Request) -> str:
        return self._respond(_dispatch(self.server.emulator.admin.router, request), counted=False)

    def _answer_api(self, request: Request) -> str:
        emulator = self.server.emulator
        faults, counters = emulator.faults, emulator.counters
        method, path = request.method, request.path
        route, path_params, path_exists = emulator.api.router.match(method, path)
        counters.record_request(method, route.template if route else "(no route)")

        # The bucket decides at arrival, before the emulated latency: a request that arrived first but drew a
        # longer delay must not find its token taken by a later arrival that drew a shorter one.
        retry_after = faults.rate_limited(method, path, arrived_at=self._arrived_at)
        delay = faults.latency_seconds(method, path)
        if delay > 0:
            counters.record_fault("latency")
            emulator.stopping.wait(delay)
        if faults.connection_reset(method, path):
            counters.record_fault("connection_reset")
            self._close_socket(reset=True)
            return "connection reset"
        if retry_after is not None:
            counters.record_fault("rate_limit")
            too_many = Response(429, {"detail": "Too Many Requests"}, {"Retry-After": str(retry_after)})
            return self._respond(too_many, counted=True)
        server_error = faults.server_error(method, path)
        if server_error is not None:
            counters.record_fault("server_error")
            return self._respond(
                Response(server_error, {"detail": HTTPStatus(server_error).phrase}), counted=True
            )

        if route is None:
            missing = (
                Response(405, {"detail": "Method Not Allowed"})
                if path_exists
                else Response(404, {"detail": "Not Found"})
            )
            return self._respond(missing, counted=True)
        revoked = faults.config.credentials_revoked
        if revoked:
            counters.record_fault("credentials_revoked")
        if revoked or not emulator.authorized(
            self.headers.get("X-Client-Secret"), self.headers.get("Authorization")
        ):
            unauthorized = Response(
                401,
                {
                    "detail": "Not authenticated: send X-Client-Secret and Authorization: Bearer <access token>"
                },
                {"WWW-Authenticate": "Bearer"},
            )
            return self._respond(unauthorized, counted=True)
        rule = faults.validation_error(method, path, _supplier_reference_id(request.body))
        if rule is not None:
            counters.record_fault("validation_error")
            rejected = Response(422, rule.error_detail(_supplier_reference_id(request.body)))
            return self._respond(rejected, counted=True)

        request.path_params = path_params
        response = _dispatch(emulator.api.router, request)
        if 200 <= response.status < 300:
            lost = faults.lost_response(method, path)
            if lost is not None:
                counters.record_fault("lost_response")
                if lost.mode == "drop":
                    self._close_socket(reset=False)
                    return f"{response.status}, answer dropped"
                emulator.stopping.wait(lost.delay_seconds)
        return self._respond(response, counted=True)


def _dispatch(router: Router, request: Request) -> Response:
    route, path_params, path_exists = router.match(request.method, request.path)
    if route is None:
        return (
            Response(405, {"detail": "Method Not Allowed"})
            if path_exists
            else Response(404, {"detail": "Not Found"})
        )
    request.path_params = path_params
    try:
        return route.handler(request)
    except ApiError as exc:
        return Response(exc.status, exc.body, exc.headers)
    except Exception:
        logger.exception("emulator bug while answering %s %s", request.method, request.path)
        return Response(500, {"detail": "Internal Server Error"})


def _supplier_reference_id(body: bytes) -> Any:
    try:
        payload = json.loads(body) if body else None
    except (ValueError, UnicodeDecodeError):
        return None
    return payload.get("supplier_reference_id") if isinstance(payload, dict) else None


class EmulatorServer:
    """The emulator in this process, on a background thread.

        with EmulatorServer(EmulatorConfig(), port=0) as emulator:
            httpx.get(emulator.base_url + "/production_batches", headers=...)

    `start()` returns the base URL (http://host:port/mrv/v0); `port=0` picks a free port.
    """

    def __init__(self, config: EmulatorConfig | None = None, host: str = "127.0.0.1", port: int = 0) -> None:
        self.config = config or EmulatorConfig()
        self._address = (host, port)
        self.stopping = threading.Event()
        self.counters = RequestCounters()
        self.faults = FaultInjector(self.config.faults)
        self.store = Store(self.config.state_path)
        self.provisioning = self.config.provisioning
        for feedstock_type in self.provisioning.feedstock_types:
            self._provision(feedstock_type)
        self.api = CertifyApi(self.store, self.provisioning, self.counters)
        self.admin = AdminApi(self.store, self.provisioning, self.faults, self.counters)
        self._client_secret, self._access_token = self.config.credentials()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._auto_verifier: AutoVerifier | None = None

    def _provision(self, feedstock_type: Any) -> None:
        existing = [
            r
            for r in self.store.list("feedstock_types")
            if r["supplier_reference_id"] == feedstock_type.supplier_reference_id
            and r["name"] == feedstock_type.name
        ]
        # A config-provisioned type is created once, even when the state file already holds it.
        if feedstock_type.id is not None or not existing:
            provision_feedstock_type(self.store, feedstock_type)

    def authorized(self, client_secret: str | None, authorization: str | None) -> bool:
        scheme, _, token = (authorization or "").partition(" ")
        secret_ok = hmac.compare_digest((client_secret or "").encode(), self._client_secret.encode())
        token_ok = hmac.compare_digest(token.strip().encode(), self._access_token.encode())
        # Empty configured credentials accept nothing, rather than every request without headers.
        configured = bool(self._client_secret and self._access_token)
        return configured and secret_ok and token_ok and scheme.lower() == "bearer"

    def start(self) -> str:
        self._httpd = _HTTPServer(self._address, self)
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.1}, name="emulator-http", daemon=True
        )
        self._thread.start()
        if self.config.auto_verify_after_seconds:
            self._auto_verifier = AutoVerifier(
                self.store, self.config.auto_verify_after_seconds, self.stopping
            )
            self._auto_verifier.start()
        return self.base_url

    def stop(self) -> None:
        self.stopping.set()  # wakes delayed answers and latency waits
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.close_connections()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._auto_verifier is not None:
            self._auto_verifier.join()
        self.store.close()

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("the emulator is not running")
        return int(self._httpd.server_address[1])

    @property
    def host(self) -> str:
        return self._address[0]

    @property
    def root_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        return self.root_url + API_PREFIX

    @property
    def admin_url(self) -> str:
        return self.root_url + ADMIN_PREFIX

    def __enter__(self) -> EmulatorServer:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()
