"""The WebSocket frame bits of the raw relay: the handshake's accept value, close frames to inject (masked
towards the upstream, RFC 6455 5.3), and frame boundaries found in a stream split anywhere."""

from __future__ import annotations

import struct

import pytest

from oidcproxy.proxy.frames import FrameTracker, accept_value, close_frame, valid_key


def _frame(opcode: int, payload: bytes, mask: bytes | None = None) -> bytes:
    """A frame as an endpoint would send it (written out by hand from RFC 6455 5.2)."""
    size = len(payload)
    if size < 126:
        head = bytes((0x80 | opcode, (0x80 if mask else 0) | size))
    elif size < 65536:
        head = bytes((0x80 | opcode, (0x80 if mask else 0) | 126)) + struct.pack(">H", size)
    else:
        head = bytes((0x80 | opcode, (0x80 if mask else 0) | 127)) + struct.pack(">Q", size)
    if mask:
        return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return head + payload


def test_accept_value_is_the_rfc_example() -> None:
    assert accept_value("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="  # RFC 6455 1.3


@pytest.mark.parametrize(
    ("key", "ok"),
    [("dGhlIHNhbXBsZSBub25jZQ==", True), ("", False), ("c2hvcnQ=", False), ("not base64!", False)],
)
def test_only_a_16_byte_base64_key_is_valid(key: str, ok: bool) -> None:
    assert valid_key(key) is ok


def test_close_frame_to_the_browser_is_unmasked_with_code_and_reason() -> None:
    assert close_frame(1008, b"session expired") == b"\x88\x11\x03\xf0session expired"


def test_close_frame_to_the_upstream_is_masked() -> None:
    frame = close_frame(1001, b"idle timeout", mask=b"\x01\x02\x03\x04")
    assert frame[:2] == bytes((0x88, 0x80 | 14))
    assert frame[2:6] == b"\x01\x02\x03\x04"
    unmasked = bytes(b ^ b"\x01\x02\x03\x04"[i % 4] for i, b in enumerate(frame[6:]))
    assert unmasked == b"\x03\xe9idle timeout"


def test_close_reason_is_cut_to_fit_a_control_frame() -> None:
    frame = close_frame(1000, b"x" * 300)
    assert frame[1] == 125 and len(frame) == 127  # RFC 6455 5.5: at most 125 payload bytes


@pytest.mark.parametrize("size", [0, 5, 125, 126, 65535, 65536, 70000])
@pytest.mark.parametrize("mask", [None, b"\x0a\x0b\x0c\x0d"])
def test_boundaries_found_whatever_the_split(size: int, mask: bytes | None) -> None:
    stream = _frame(0x2, b"a" * size, mask) + _frame(0x9, b"ping", mask)
    for step in (1, 3, 7, 4096, len(stream)):
        tracker = FrameTracker()
        boundaries = []
        for at in range(0, len(stream), step):
            assert tracker.feed(stream[at : at + step]) == len(stream[at : at + step])
            if tracker.at_boundary:
                boundaries.append(min(at + step, len(stream)))
        assert boundaries[-1] == len(stream)
        assert all(b in (len(stream) - 6 - (4 if mask else 0), len(stream)) for b in boundaries)
        assert not tracker.closed


def test_stop_at_boundary_takes_only_the_rest_of_the_frame_under_way() -> None:
    first, second = _frame(0x1, b"hello world"), _frame(0x1, b"next")
    tracker = FrameTracker()
    tracker.feed(first[:5])
    assert not tracker.at_boundary
    rest = first[5:] + second
    assert tracker.feed(rest, stop_at_boundary=True) == len(first) - 5
    assert tracker.at_boundary
    assert tracker.feed(second, stop_at_boundary=True) == 0  # between frames: nothing to finish


def test_a_header_split_in_two_is_not_a_boundary() -> None:
    frame = _frame(0x2, b"z" * 300)  # a 4-byte header
    tracker = FrameTracker()
    tracker.feed(frame[:3])
    assert not tracker.at_boundary
    assert tracker.feed(frame[3:], stop_at_boundary=True) == len(frame) - 3
    assert tracker.at_boundary


def test_a_close_frame_is_noticed() -> None:
    tracker = FrameTracker()
    tracker.feed(_frame(0x1, b"bye") + close_frame(1000, b"done", mask=b"\x00\x00\x00\x01"))
    assert tracker.closed and tracker.at_boundary
