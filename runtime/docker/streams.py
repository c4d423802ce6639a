"""Docker's multiplexed exec stream (no TTY), read against a deadline.

Each frame is an 8-byte header (stream: 1 stdout, 2 stderr; three zero bytes; payload length, 32-bit
big-endian) and its payload. The SDK's own readers block without a timeout, so the exec's raw socket is
read here with poll(): the caller gets stdout, stderr and whether the stream ended before the deadline.
"""

from __future__ import annotations

import select
import socket
import struct
import time

from runtime.errors import InstanceError

HEADER = struct.Struct(">BxxxL")
STDOUT, STDERR = 1, 2


class Demux:
    """Feed it bytes as they come; it sorts complete frames into stdout and stderr."""

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.out = bytearray()
        self.err = bytearray()

    def feed(self, data: bytes) -> None:
        self.buffer += data
        while len(self.buffer) >= HEADER.size:
            kind, size = HEADER.unpack_from(self.buffer)
            if kind not in (0, STDOUT, STDERR):
                raise InstanceError(f"docker exec: unexpected stream id {kind} in the output (not a "
                                    "multiplexed stream?)")
            if len(self.buffer) < HEADER.size + size:
                return
            payload = bytes(self.buffer[HEADER.size:HEADER.size + size])
            del self.buffer[:HEADER.size + size]
            (self.err if kind == STDERR else self.out).extend(payload)

    def finish(self) -> None:
        """At the end of the stream: a partial frame means the output was cut."""
        if self.buffer:
            raise InstanceError(f"docker exec: the output stream ended inside a frame ({len(self.buffer)} "
                                "bytes of it)")


def read_until(sock: socket.socket, deadline: float, demux: Demux) -> bool:
    """Read `sock` into `demux` until it closes (True) or the monotonic `deadline` passes (False)."""
    poller = select.poll()
    poller.register(sock.fileno(), select.POLLIN | select.POLLHUP | select.POLLERR)
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        if not poller.poll(min(left, 1.0) * 1000):
            continue
        try:
            data = sock.recv(1 << 16)
        except (BlockingIOError, InterruptedError):
            continue
        if not data:
            demux.finish()
            return True
        demux.feed(data)
