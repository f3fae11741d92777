"""`dmrv-sync up`'s process handling: stopping the stack leaves nothing of its process groups behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from dmrv_sync.local_stack import LocalStack
from dmrv_sync.settings import Settings

# A group leader whose child ignores SIGTERM, like a Dagster code server spawned during shut-down.
LEADER = """
import signal, subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c",
    "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ready', flush=True); time.sleep(300)"],
    stdout=subprocess.PIPE, text=True)
assert child.stdout.readline().strip() == "ready"
print(child.pid, flush=True)
time.sleep(300)
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A killed child of an exited leader is reaped by init; until then it is a zombie, not alive.
    status = Path(f"/proc/{pid}/status")
    return not (status.exists() and "State:\tZ" in status.read_text())


def test_stop_kills_what_a_group_leader_left_behind(tmp_path: Path) -> None:
    stack = LocalStack(Settings(dmrv_data_dir=tmp_path))
    leader = subprocess.Popen(
        [sys.executable, "-c", LEADER], stdout=subprocess.PIPE, text=True, start_new_session=True
    )
    stack.processes.append(leader)
    assert leader.stdout is not None
    child = int(leader.stdout.readline())
    assert _alive(child)

    try:
        stack.stop()

        assert leader.poll() is not None
        deadline = time.monotonic() + 10
        while _alive(child) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(child), "the SIGTERM-ignoring child of the stopped group is still running"
    finally:
        if _alive(child):
            os.kill(child, signal.SIGKILL)
