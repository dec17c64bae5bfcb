#!/usr/bin/env python3
"""Checks that a benchmark peer serves its service correctly (Python standard library only).

    check.py echo|counter PORT [--one-room] [--wait SECONDS]

First waits (up to --wait seconds) until the server completes a WebSocket handshake, then checks:
  echo:    a binary and a text message each come back to the sender as binary with the same bytes
           (small, 64 KiB and 1 MiB messages), and a burst of 64 messages sent in one write comes
           back whole and in order;
  counter: two clients of one room both receive `new value: 1`, then `new value: 2`; `decrement` and
           other messages behave; a second room has a counter of its own (skipped with --one-room,
           for a server that serves only /ws).
Exits 0 when every check passed, 1 otherwise (with the reason on stderr).
"""
import argparse
import base64
import os
import socket
import struct
import sys
import time


class Client:
    def __init__(self, port, path, timeout=5.0):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            (f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
             f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
        self.buf = b""
        while b"\r\n\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed during the handshake")
            self.buf += chunk
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        status = head.split(b"\r\n", 1)[0]
        if b" 101 " not in status + b" ":
            raise ConnectionError(f"handshake answered {status.decode(errors='replace')!r}")

    def send(self, payload, opcode):
        self.sock.sendall(self.frame(payload, opcode))

    @staticmethod
    def frame(payload, opcode):
        """A masked client frame."""
        if isinstance(payload, str):
            payload = payload.encode()
        n = len(payload)
        head = bytes([0x80 | opcode])
        if n < 126:
            head += bytes([0x80 | n])
        elif n <= 0xFFFF:
            head += bytes([0x80 | 126]) + struct.pack("!H", n)
        else:
            head += bytes([0x80 | 127]) + struct.pack("!Q", n)
        mask = os.urandom(4)
        return head + mask + _mask(payload, mask)

    def _need(self, n):
        while len(self.buf) < n:
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise ConnectionError("connection closed")
            self.buf += chunk

    def recv(self):
        """The next data message as (opcode, bytes), fragments joined; pings are skipped."""
        kind, parts = None, []
        while True:
            self._need(2)
            b0, b1 = self.buf[0], self.buf[1]
            n, pos = b1 & 0x7F, 2
            if n == 126:
                self._need(4)
                n, pos = struct.unpack("!H", self.buf[2:4])[0], 4
            elif n == 127:
                self._need(10)
                n, pos = struct.unpack("!Q", self.buf[2:10])[0], 10
            self._need(pos + n)
            payload, self.buf = self.buf[pos:pos + n], self.buf[pos + n:]
            if b0 & 0x0F in (0x0, 0x1, 0x2):
                kind = kind if b0 & 0x0F == 0 else b0 & 0x0F
                parts.append(payload)
                if b0 & 0x80:
                    return kind, b"".join(parts)
            if b0 & 0x0F == 0x8:
                raise ConnectionError(f"closed by the server: {payload!r}")

    def expect_nothing(self, seconds=0.3):
        self.sock.settimeout(seconds)
        try:
            msg = self.recv()
        except (socket.timeout, TimeoutError):
            return
        finally:
            self.sock.settimeout(5.0)
        raise AssertionError(f"unexpected message {msg!r}")

    def close(self):
        """The close handshake: our close frame, then the server's (or its end of the stream)."""
        try:
            self.send(struct.pack("!H", 1000), 0x8)
            self.sock.settimeout(1.0)
            while True:
                self.recv()
        except (OSError, ConnectionError):
            pass
        finally:
            self.sock.close()


def _mask(payload, mask):
    m = (mask * (len(payload) // 4 + 1))[: len(payload)]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(m, "big")).to_bytes(len(payload), "big")


def wait_ready(port, path, seconds):
    deadline = time.monotonic() + seconds
    while True:
        try:
            Client(port, path, timeout=1.0).close()
            return
        except (OSError, ConnectionError) as e:
            if time.monotonic() > deadline:
                raise ConnectionError(f"no WebSocket handshake on port {port} within {seconds:g} s: {e}")
            time.sleep(0.1)


def check_echo(port, path):
    c = Client(port, path)
    for payload, opcode in ((b"\x00\x01binary\xff", 0x2), ("text é", 0x1), (os.urandom(65536), 0x2),
                            (os.urandom(1 << 20), 0x2)):
        c.send(payload, opcode)
        want = payload.encode() if isinstance(payload, str) else payload
        kind, got = c.recv()
        assert kind == 0x2, f"echo came back with opcode {kind}, not binary"
        assert got == want, f"echo of {len(want)} bytes came back as {len(got)} different bytes"
    # Frames that straddle reads, in one write (64: Rust stateroom-server 0.4 queues at most 100 per client)
    burst = [os.urandom(1 + i * 997 % 8000) for i in range(64)]
    c.sock.sendall(b"".join(Client.frame(m, 0x2) for m in burst))
    for i, want in enumerate(burst):
        assert c.recv() == (0x2, want), f"message {i} of a burst of {len(burst)} came back wrong"
    c.close()


def check_counter(port, path, other_path):
    a, b = Client(port, path), Client(port, path)
    time.sleep(0.1)  # both joined before the first broadcast (servers may handle joins asynchronously)
    a.send("increment", 0x1)
    for c in (a, b):
        assert c.recv() == (0x1, b"new value: 1"), "first increment"
    b.send("increment", 0x1)
    for c in (a, b):
        assert c.recv() == (0x1, b"new value: 2"), "second increment"
    a.send("hello", 0x1)
    a.send(b"increment", 0x2)
    a.expect_nothing()
    b.send("decrement", 0x1)
    for c in (a, b):
        assert c.recv() == (0x1, b"new value: 1"), "decrement"
    if other_path:
        o = Client(port, other_path)
        o.send("increment", 0x1)
        assert o.recv() == (0x1, b"new value: 1"), "a second room has a counter of its own"
        a.expect_nothing(0.2)
        o.close()
    a.close()
    b.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("service", choices=["echo", "counter"])
    ap.add_argument("port", type=int)
    ap.add_argument("--one-room", action="store_true", help="the server serves /ws only")
    ap.add_argument("--wait", type=float, default=30.0)
    args = ap.parse_args()
    path = "/ws" if args.one_room else "/ws/check-a"
    try:
        wait_ready(args.port, path, args.wait)
        if args.service == "echo":
            check_echo(args.port, path)
        else:
            check_counter(args.port, path, None if args.one_room else "/ws/check-b")
    except (AssertionError, OSError, ConnectionError) as e:
        print(f"check failed: {args.service} on port {args.port}: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
