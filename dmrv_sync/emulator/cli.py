"""`dmrv-sync emulator`: run the emulator in the foreground until SIGTERM/SIGINT.

Prints exactly one line on stdout when it accepts connections (`emulator listening on <base URL>`),
which is what scripts and tests wait for; the request log goes to stderr.
"""

from __future__ import annotations

import json
import logging
import signal
import threading
from pathlib import Path
from types import FrameType

import click
import pydantic

from dmrv_sync.emulator.config import EmulatorConfig
from dmrv_sync.emulator.faults import FaultConfig
from dmrv_sync.emulator.server import EmulatorServer


def _fault_config(value: str) -> FaultConfig:
    """--faults takes JSON, or @path to a JSON file."""
    text = Path(value[1:]).read_text(encoding="utf-8") if value.startswith("@") else value
    return FaultConfig.model_validate(json.loads(text))


@click.command("emulator")
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option("--port", default=8765, show_default=True, type=int, help="Port; 0 picks a free one.")
@click.option(
    "--config",
    "config_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="JSON config: provisioning, faults, state_path, auto_verify_after_seconds (example_config.json).",
)
@click.option(
    "--state",
    "state_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="SQLite file to keep objects in.",
)
@click.option(
    "--seed", type=int, help="Seed of the fault injector's random sequence (overrides the config's)."
)
@click.option("--faults", "faults", help="Fault config as JSON, or @file.json (replaces the config's).")
@click.option(
    "--auto-verify-after",
    type=float,
    help="Seconds after which a submitted statement becomes VERIFIED, and again CREDITS_ISSUED.",
)
@click.option("--quiet", is_flag=True, help="No request log on stderr.")
def emulator(
    host: str,
    port: int,
    config_path: Path | None,
    state_path: Path | None,
    seed: int | None,
    faults: str | None,
    auto_verify_after: float | None,
    quiet: bool,
) -> None:
    """Run a local emulator of Isometric's Certify API on loopback."""
    try:
        config = EmulatorConfig.from_file(config_path) if config_path else EmulatorConfig()
        fault_config = _fault_config(faults) if faults else config.faults
    except (pydantic.ValidationError, json.JSONDecodeError, OSError) as exc:
        raise click.UsageError(f"invalid emulator configuration: {exc}") from exc
    if seed is not None:
        fault_config = fault_config.model_copy(update={"seed": seed})
    config = config.model_copy(update={"faults": fault_config})
    if state_path is not None:
        config = config.model_copy(update={"state_path": state_path})
    if auto_verify_after is not None:
        config = config.model_copy(update={"auto_verify_after_seconds": auto_verify_after})

    logging.basicConfig(
        level=logging.WARNING if quiet else logging.INFO, format="%(asctime)s %(name)s %(message)s"
    )
    stop_requested = threading.Event()

    def _request_stop(signum: int, frame: FrameType | None) -> None:
        stop_requested.set()

    signal.signal(signal.SIGTERM, _request_stop)
    signal.signal(signal.SIGINT, _request_stop)

    server = EmulatorServer(config, host=host, port=port)
    base_url = server.start()
    click.echo(f"emulator listening on {base_url}")
    try:
        while not stop_requested.wait(0.5):
            pass
    finally:
        server.stop()
