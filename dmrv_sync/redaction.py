"""Keeping secrets out of every text that leaves the process (logs, errors, audit rows, metadata)."""

from __future__ import annotations

from collections.abc import Iterable

MASK = "***"


def redact(text: str, secrets: Iterable[str]) -> str:
    """`text` with every occurrence of every (non-trivial) secret replaced by a mask."""
    for secret in sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True):
        text = text.replace(secret, MASK)
    return text
