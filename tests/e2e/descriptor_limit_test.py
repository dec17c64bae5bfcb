#!/usr/bin/env python3
"""The accept loop under a low descriptor limit (RLIMIT_NOFILE), against a real server process.

Usage: descriptor_limit_test.py SERVER [ARGS...]   (a server taking --port, --host, --log-level)

1. With the default --max-connections (derived from the limit), connections beyond the budget are
   answered 503 and closed, the others are served, and the server goes on once they close.
2. With --max-connections above what the descriptors allow, accept fails with EMFILE: the server
   must back off instead of spinning (its CPU time while saturated stays low, it logs the failure
   once, not thousands of times), and must accept again once descriptors are free.
"""
import re
import resource
import socket
import subprocess
import sys
import threading
import time

NOFILE = 48  # descriptors the server gets (soft = hard, so it cannot raise them)
failures = []


def check(condition, message):
    if not condition:
        failures.append(message)
        print(f"FAILED: {message}", flush=True)
    return condition


class Server:
    def __init__(self, command):
        def limit():
            resource.setrlimit(resource.RLIMIT_NOFILE, (NOFILE, NOFILE))

        self.proc = subprocess.Popen(command + ["--port", "0", "--host", "127.0.0.1", "--log-level", "info"],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                     preexec_fn=limit)
        self.lines = []
        self.port = None
        ready = threading.Event()

        def drain():  # keeps reading, so a chatty server never blocks on a full pipe
            for line in self.proc.stdout:
                self.lines.append(line.rstrip("\n"))
                m = re.search(r"listening on \S+:(\d+)", line)
                if m and self.port is None:
                    self.port = int(m.group(1))
                    ready.set()
            ready.set()

        threading.Thread(target=drain, daemon=True).start()
        if not ready.wait(30) or self.port is None:
            self.stop()
            raise SystemExit("the server did not start:\n" + "\n".join(self.lines))

    def cpu_seconds(self):
        with open(f"/proc/{self.proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / 100.0  # utime + stime, in clock ticks

    def count(self, pattern):
        return sum(1 for line in list(self.lines) if re.search(pattern, line))

    def stop(self):
        if failures:  # what the server said, for the failure's reader
            print("--- server output (last 40 lines) ---\n" + "\n".join(self.lines[-40:]), flush=True)
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def connect(port):
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.settimeout(5)
    return s


def status_ok(port, deadline=10.0):
    """GET /status answered 200 within `deadline` seconds (retrying while the server is saturated)."""
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        try:
            with connect(port) as s:
                s.sendall(b"GET /status HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                data = b""
                while chunk := s.recv(4096):
                    data += chunk
                if data.startswith(b"HTTP/1.1 200"):
                    return True
        except OSError:
            pass
        time.sleep(0.1)
    return False


def release(server, sockets, message):
    """Closes the clients' connections; the server must then serve a new request."""
    for s in sockets:
        s.close()
    check(status_ok(server.port), message)


def answer(s):
    """What the server wrote to a connection before closing it, or None if it is still open."""
    s.settimeout(0.5)
    try:
        data = s.recv(4096)
        return data
    except socket.timeout:
        return None
    except OSError:
        return b""


def test_budget_refuses_with_503(command):
    server = Server(command)
    try:
        sockets = [connect(server.port) for _ in range(30)]
        time.sleep(0.5)  # let the server take them all
        answers = [answer(s) for s in sockets]
        refused = [a for a in answers if a is not None and a.startswith(b"HTTP/1.1 503")]
        held = [a for a in answers if a is None]
        check(len(refused) > 0, f"connections past the budget are answered 503 (answers: {answers[:5]}...)")
        check(len(held) > 0, "connections within the budget are kept")
        check(len(refused) + len(held) == len(sockets), f"every connection is either kept or refused: {answers}")
        check(all(b"Retry-After: 1" in a for a in refused), "a refusal says when to retry")
        check(server.count(r"refused a connection .*--max-connections") == 1,
              "the refusals are logged once (rate-limited): "
              f"{server.count(r'refused a connection')} lines")
        release(server, sockets, "the server serves again once the connections are gone")
        print(f"done: budget ({len(held)} kept, {len(refused)} refused with 503)", flush=True)
    finally:
        server.stop()


def test_accept_backs_off_when_out_of_descriptors(command):
    server = Server(command + ["--max-connections", "1000"])
    try:
        sockets = [connect(server.port) for _ in range(80)]  # more than the descriptors allow
        time.sleep(0.5)
        before = server.cpu_seconds()
        time.sleep(2.0)
        used = server.cpu_seconds() - before
        check(used < 0.5, f"out of descriptors, the server does not spin: {used:.2f} s of CPU in 2 s")
        failed = server.count(r"cannot accept connections")
        check(1 <= failed <= 2, f"the accept failure is logged once per 10 s, not per attempt: {failed} lines")
        release(server, sockets, "the server accepts again once descriptors are free")
        print(f"done: back-off ({used:.2f} s CPU in 2 s saturated, {failed} log line(s))", flush=True)
    finally:
        server.stop()


def main():
    if len(sys.argv) < 2:
        raise SystemExit(__doc__)
    command = sys.argv[1:]
    test_budget_refuses_with_503(command)
    test_accept_backs_off_when_out_of_descriptors(command)
    if failures:
        print(f"{len(failures)} check(s) failed", flush=True)
        sys.exit(1)
    print("all passed", flush=True)


if __name__ == "__main__":
    main()
