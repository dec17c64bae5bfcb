"""What one client with no rights can do to the server, tried from a raw socket: it must not grow
the server's memory or forge its log.

    hostile_clients_test.py SERVER-COMMAND...   (a counter server: counter-native, or
                                                 `stateroom serve counter.wasm`)

Each case starts its own server (--port 0) and stops it. Release builds only: it measures resident
memory, which a sanitizer's shadow memory would swamp."""
import base64
import os
import re
import select
import socket
import struct
import sys
import time

from harness import Cases, Server, check, stop

COMMAND = sys.argv[1:]
MiB = 1 << 20


def rss(server):
    """The server's resident memory in bytes."""
    with open(f"/proc/{server.proc.pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def frame(opcode, payload, fin=True):
    """A masked client frame."""
    mask = os.urandom(4)
    head = bytes([(0x80 if fin else 0) | opcode])
    n = len(payload)
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 65536:
        head += bytes([0x80 | 126]) + struct.pack("!H", n)
    else:
        head += bytes([0x80 | 127]) + struct.pack("!Q", n)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def upgrade(port, path, receive_buffer=None):
    """A raw socket upgraded to a WebSocket at `path` (the 101 read, nothing after it)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if receive_buffer:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    s.settimeout(5)
    s.connect(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall((f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
    response = b""
    while b"\r\n\r\n" not in response:
        chunk = s.recv(1)  # one byte at a time: nothing past the response is taken
        check(chunk, f"closed during the upgrade: {response!r}")
        response += chunk
    check(response.startswith(b"HTTP/1.1 101"), f"not upgraded: {response[:200]!r}")
    return s


def counter_answers(port):
    """Whether a new client of another room still gets its `new value: 1`."""
    s = upgrade(port, f"/ws/bystander-{time.monotonic_ns()}")
    try:
        s.sendall(frame(0x1, b"increment"))
        data = b""
        deadline = time.monotonic() + 5
        while b"new value: 1" not in data and time.monotonic() < deadline:
            r, _, _ = select.select([s], [], [], 0.2)
            if r:
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
        return b"new value: 1" in data
    finally:
        s.close()


def ping_flood(port, seconds, read_per_tick):
    """Pings of 125 bytes as fast as the server takes them for `seconds`, reading `read_per_tick`
    bytes every 20 ms (0: never). The pings the server took and the bytes read."""
    s = upgrade(port, "/ws/flood", receive_buffer=4096)
    s.setblocking(False)
    ping = frame(0x9, b"p" * 125)
    burst = ping * 64
    sent = got = 0
    pending = b""
    end = time.monotonic() + seconds
    next_read = time.monotonic()
    try:
        while time.monotonic() < end:
            if not pending:
                pending = burst
            _, w, _ = select.select([], [s], [], 0.02)
            if w:
                try:
                    n = s.send(pending)
                    sent += n
                    pending = pending[n:]
                except BlockingIOError:
                    pass
                except OSError:
                    break  # closed by the server: fine
            if read_per_tick and time.monotonic() >= next_read:
                next_read += 0.02
                try:
                    chunk = s.recv(read_per_tick)
                    if not chunk:
                        break
                    got += len(chunk)
                except BlockingIOError:
                    pass
                except OSError:
                    break
    finally:
        s.close()
    return sent // len(ping), got


def ping_flood_case(read_per_tick, what):
    def body():
        server = Server(COMMAND + ["--log-level", "info"])
        check(server.port is not None, "the server did not start:\n" + "".join(server.startup[-30:]))
        try:
            before = rss(server)
            sent, got = ping_flood(server.port, 4, read_per_tick)
            grown = rss(server) - before
            print(f"  {what}: {sent} pings sent, {got} bytes read, the server grew by {grown / MiB:.1f} MiB")
            check(sent > 10000, f"only {sent} pings went out: the flood did not happen")
            check(grown < 16 * MiB, f"the server grew by {grown / MiB:.0f} MiB under a ping flood")
            check(counter_answers(server.port), "the server does not answer another client after the flood")
        finally:
            stop(server)
    return body


FORGED = "[2026-12-07 00:00:00.000] [critical] FORGED"


def forged_log_line():
    """A room id with a newline, a forged line and a terminal escape after it, and a close reason
    with the same: the log shows them escaped, on the line they belong to."""
    server = Server(COMMAND + ["--log-level", "info"])
    check(server.port is not None, "the server did not start:\n" + "".join(server.startup[-30:]))
    try:
        s = upgrade(server.port, "/ws/x%0A" + FORGED.replace(" ", "%20") + "%1B[2J%C2%9B31m")
        s.sendall(frame(0x1, b"increment"))
        s.recv(4096)
        reason = ("bye\n" + FORGED + "\x1b[2J").encode()
        s.sendall(frame(0x8, struct.pack("!H", 1000) + reason))
        s.settimeout(5)
        while s.recv(4096):
            pass
        s.close()
        time.sleep(0.2)
    finally:
        output = stop(server)
    lines = output.splitlines()
    forged = [line for line in lines if line.startswith(FORGED)]
    check(not forged, f"a forged line in the log: {forged[:1]!r}")
    check("\x1b" not in output and "\u009b" not in output, "a terminal escape reached the log")
    check(any("room 'x\\x0a" + FORGED + "\\x1b[2J\\xc2\\x9b31m' client 1 connected" in line for line in lines),
          "the room id is not in the log, escaped: " + repr([line for line in lines if "FORGED" in line][:3]))


def main():
    cases = Cases()
    cases("a ping flood from a client that never reads grows nothing", ping_flood_case(0, "never reading"))
    cases("a ping flood from a client that reads 200 KB/s grows nothing", ping_flood_case(4096, "reading slowly"))
    cases("room ids and close reasons cannot forge a log line", forged_log_line)
    return cases.exit_code()


if __name__ == "__main__":
    sys.exit(main())
