"""Stopping a command a test started, as an orchestrator would: SIGTERM, then SIGKILL if it hangs."""

from __future__ import annotations

import subprocess

__all__ = ["stop"]


def stop(process: subprocess.Popen[str], timeout: float = 20.0) -> str:
    """Stop `process` and answer everything it wrote on stderr (empty when stderr was not piped)."""
    process.terminate()
    try:
        _, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        _, err = process.communicate()
    return err or ""
