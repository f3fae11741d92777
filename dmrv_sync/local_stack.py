"""`dmrv-sync up`: the whole system on a laptop, on its embedded defaults.

Starts the local registry emulator (state kept in the data directory), migrates the SQLite database,
seeds demo data on first start and links the demo facilities, then runs `dagster dev` (webserver and
daemon, SQLite instance under the data directory) with the sensors on. Ctrl-C stops everything it
started.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from dmrv_sync.settings import DEMO_ACCESS_TOKEN, DEMO_CLIENT_SECRET, Settings

READY_PREFIX = "emulator listening on "
REPO_DAGSTER_YAML = Path(__file__).resolve().parents[1] / "dagster.yaml"
DEFAULT_INSTANCE_YAML = "telemetry:\n  enabled: false\n"


class StackError(RuntimeError):
    pass


class LocalStack:
    def __init__(
        self,
        settings: Settings,
        *,
        emulator_port: int = 8765,
        dagster_port: int = 3000,
        auto_verify_after: float = 90,
    ) -> None:
        self.settings = settings
        self.emulator_port = emulator_port
        self.dagster_port = dagster_port
        self.auto_verify_after = auto_verify_after
        self.data_dir = settings.dmrv_data_dir.resolve()
        self.processes: list[subprocess.Popen[str]] = []

    def start_emulator(self) -> str:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = (self.data_dir / "emulator.log").open("a", encoding="utf-8")
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "dmrv_sync.emulator",
                "--port",
                str(self.emulator_port),
                "--state",
                str(self.data_dir / "emulator.sqlite3"),
                "--auto-verify-after",
                str(self.auto_verify_after),
            ],
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            start_new_session=True,  # Ctrl-C reaches us; we stop it ourselves, in order
        )
        log.close()
        self.processes.append(process)
        assert process.stdout is not None
        line = process.stdout.readline()
        if not line.startswith(READY_PREFIX):
            raise StackError(
                f"the registry emulator did not start (is port {self.emulator_port} free? see "
                f"{self.data_dir / 'emulator.log'})"
            )
        return line[len(READY_PREFIX) :].strip()

    def environment(self, emulator_url: str) -> dict[str, str]:
        env = dict(os.environ)
        env["ISOMETRIC_BASE_URL"] = emulator_url
        env.setdefault("ISOMETRIC_CLIENT_SECRET", DEMO_CLIENT_SECRET)
        env.setdefault("ISOMETRIC_ACCESS_TOKEN", DEMO_ACCESS_TOKEN)
        env["DMRV_DATABASE_URL"] = self.settings.database_url
        env.setdefault("DMRV_SENSOR_INTERVAL_SECONDS", "15")
        dagster_home = self.data_dir / "dagster"
        dagster_home.mkdir(parents=True, exist_ok=True)
        instance_yaml = dagster_home / "dagster.yaml"
        if not instance_yaml.exists():
            instance_yaml.write_text(
                REPO_DAGSTER_YAML.read_text() if REPO_DAGSTER_YAML.exists() else DEFAULT_INSTANCE_YAML
            )
        env["DAGSTER_HOME"] = str(dagster_home)
        return env

    def start_dagster(self, env: dict[str, str]) -> subprocess.Popen[str]:
        dagster = Path(sys.executable).with_name("dagster")
        process = subprocess.Popen(
            [
                str(dagster),
                "dev",
                "-m",
                "dmrv_sync.definitions",
                "-h",
                "127.0.0.1",
                "-p",
                str(self.dagster_port),
            ],
            env=env,
            text=True,
            start_new_session=True,
        )
        self.processes.append(process)
        return process

    def stop(self) -> None:
        """SIGTERM each process group (Dagster first, then the emulator), then SIGKILL what is left of it."""
        for process in reversed(self.processes):
            if process.poll() is None:
                _signal_group(process, signal.SIGTERM)
        deadline = time.monotonic() + 20
        for process in reversed(self.processes):
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _signal_group(process, signal.SIGKILL)
                process.wait()
            # What the group's leader left behind: seen in CI, a code server Dagster spawned while it was
            # shutting down outlived `dmrv-sync up` by minutes, writing into the data directory.
            _signal_group(process, signal.SIGKILL)


def _signal_group(process: subprocess.Popen[str], sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, sig)
