"""Big sessions: split into chunks, and a warning once they pass what comes back in one Cookie line."""

from __future__ import annotations

import logging

import pytest

from oidcproxy.sessions.cookies import COOKIE_BUDGET, join_cookie, oversize_warning, split_cookie


def test_big_session_chunks_round_trip_without_warning(caplog: pytest.LogCaptureFixture) -> None:
    value = "v" * 30_000
    with caplog.at_level(logging.WARNING, logger="oidcproxy.cookies"):
        parts = split_cookie("_oidcproxy", value)
    assert [n for n, _ in parts][:2] == ["_oidcproxy_0", "_oidcproxy_1"]
    assert join_cookie("_oidcproxy", dict(parts)) == value
    assert not caplog.records


def test_session_past_the_budget_warns_with_cause_and_fix(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="oidcproxy.cookies"):
        split_cookie("_oidcproxy", "v" * (COOKIE_BUDGET + 1))
    (record,) = caplog.records
    text = record.getMessage()
    assert "large_client_header_buffers" in text and "groups" in text and "fix:" in text
    assert oversize_warning("_oidcproxy", 1000) is None
