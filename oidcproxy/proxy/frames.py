"""The few WebSocket (RFC 6455) bits the raw relay needs: the handshake's accept value, a close frame
to inject, and where frames begin and end in a byte stream relayed untouched.

Pure: no I/O, no aiohttp. Imports nothing from oidcproxy.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import struct

__all__ = ["CLOSE", "FrameTracker", "accept_value", "close_frame", "valid_key"]

CLOSE = 0x8
_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455 1.3
_MAX_REASON = 123  # a control frame's payload is at most 125 bytes (5.5), 2 of them the code


def valid_key(key: str) -> bool:
    """RFC 6455 4.2.1 item 5: Sec-WebSocket-Key is 16 random bytes, base64-encoded."""
    try:
        return len(base64.b64decode(key.strip(), validate=True)) == 16
    except (binascii.Error, ValueError):
        return False


def accept_value(key: str) -> str:
    """RFC 6455 4.2.2 item 5.4: Sec-WebSocket-Accept for a Sec-WebSocket-Key."""
    digest = hashlib.sha1(key.strip().encode() + _GUID).digest()  # noqa: S324 - the RFC's choice, not a secret
    return base64.b64encode(digest).decode()


def close_frame(code: int, reason: bytes = b"", mask: bytes | None = None) -> bytes:
    """A close frame (RFC 6455 5.5.1). A client's frames are masked (5.3): pass the 4-byte `mask` for
    frames to a server; a server's go unmasked."""
    payload = struct.pack(">H", code) + reason[:_MAX_REASON]
    if mask is None:
        return bytes((0x80 | CLOSE, len(payload))) + payload
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return bytes((0x80 | CLOSE, 0x80 | len(payload))) + mask + masked


class FrameTracker:
    """Follows frame boundaries in one direction of a relayed stream without copying its payloads.

    Knows whether the stream stands between two frames (a close frame may be injected only there)
    and whether a close frame went by. Payloads, masks and extension bits are not its business.
    """

    __slots__ = ("_head", "_need", "closed")

    def __init__(self) -> None:
        self._head = b""  # a frame header split over reads
        self._need = 0  # payload bytes of the current frame still to come
        self.closed = False  # a close frame's header went by

    @property
    def at_boundary(self) -> bool:
        return not self._need and not self._head

    def feed(self, data: bytes, *, stop_at_boundary: bool = False) -> int:
        """Follow `data`; returns how many of its bytes were taken: all of them, or with
        `stop_at_boundary` only those up to the end of the frame under way (0 when between frames)."""
        pos, size = 0, len(data)
        while pos < size:
            if self._need:
                take = min(self._need, size - pos)
                self._need -= take
                pos += take
                if stop_at_boundary and self.at_boundary:
                    return pos
                continue
            if stop_at_boundary and self.at_boundary:
                return pos
            pos = self._header(data, pos)
            if stop_at_boundary and self.at_boundary:
                return pos
        return size

    def _header(self, data: bytes, pos: int) -> int:
        """Read (the rest of) a frame header starting at data[pos]; returns the position after it."""
        head = self._head + data[pos : pos + 14 - len(self._head)]
        length = _header_length(head)
        if length is None or len(head) < length:
            self._head = head
            return len(data)
        used = length - len(self._head)
        self._head = b""
        if head[0] & 0x0F == CLOSE:
            self.closed = True
        size = head[1] & 0x7F
        if size == 126:
            size = struct.unpack_from(">H", head, 2)[0]
        elif size == 127:
            size = struct.unpack_from(">Q", head, 2)[0]
        self._need = size
        return pos + used


def _header_length(head: bytes) -> int | None:
    """A frame header's length from its first two bytes (RFC 6455 5.2), None before they are here."""
    if len(head) < 2:
        return None
    size = head[1] & 0x7F
    extra = 2 if size == 126 else 8 if size == 127 else 0
    return 2 + extra + (4 if head[1] & 0x80 else 0)
