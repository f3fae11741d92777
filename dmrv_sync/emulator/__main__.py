"""`python -m dmrv_sync.emulator`: the same command as `dmrv-sync emulator`."""

from dmrv_sync.emulator.cli import emulator

if __name__ == "__main__":
    emulator(prog_name="python -m dmrv_sync.emulator")
