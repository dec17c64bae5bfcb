#!/usr/bin/env python3
"""End-to-end test of the counter with an independent client: Python `websockets`.

Usage: counter_test.py [--expect-startup TEXT] PATH/TO/counter-native
       counter_test.py [--expect-startup TEXT] PATH/TO/stateroom serve PATH/TO/counter.wasm
Starts the server on a free port, runs the seed's quick start as a user would, then stops the
server with SIGTERM and checks the graceful shutdown. With --expect-startup, what the server
prints before it listens must contain TEXT (e.g. the interface it loaded a module with: run it with
--log-level debug). Exits non-zero on any failure.
"""
import asyncio
import signal
import sys
import urllib.error
import urllib.request

import websockets

from harness import Server, check, run

TIMEOUT = 5


async def expect(ws, text):
    got = await recv(ws)
    check(got == text, f"expected {text!r}, got {got!r}")


async def recv(ws):
    return await asyncio.wait_for(ws.recv(), TIMEOUT)


async def test_quick_start(base):
    async with websockets.connect(f"{base}/ws") as a, websockets.connect(f"{base}/ws") as b:
        await a.send("increment")
        await expect(a, "new value: 1")
        await expect(b, "new value: 1")
        await b.send("decrement")
        await expect(a, "new value: 0")
        await expect(b, "new value: 0")


async def test_rooms_are_separate_counters(base):
    async with websockets.connect(f"{base}/ws/a") as a, websockets.connect(f"{base}/ws/b") as b:
        await a.send("increment")
        await a.send("increment")
        await expect(a, "new value: 1")
        await expect(a, "new value: 2")
        await b.send("increment")
        await expect(b, "new value: 1")


async def test_other_messages_are_ignored(base):
    async with websockets.connect(f"{base}/ws/ignored") as a:
        await a.send("hello")
        await a.send(b"increment")  # binary: not the text command
        await a.send("increment")
        await expect(a, "new value: 1")


async def test_status_and_bad_room(base, port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/status", timeout=TIMEOUT) as r:
        body = r.read()
        check(r.status == 200 and body == b"ok", f"/status answered {r.status} {body!r}")
    try:
        async with websockets.connect(f"{base}/ws/%zz"):
            raise AssertionError("a malformed room id was accepted")
    except websockets.exceptions.InvalidStatus as e:
        check(e.response.status_code == 400, f"a malformed room id got {e.response.status_code}, not 400")


async def test_graceful_shutdown(base, server):
    async with websockets.connect(f"{base}/ws/bye") as a:
        await a.send("increment")
        await expect(a, "new value: 1")
        server.send_signal(signal.SIGTERM)
        try:
            await recv(a)
            raise AssertionError("no close after SIGTERM")
        except websockets.exceptions.ConnectionClosed as e:
            check(e.rcvd is not None and e.rcvd.code == 1001, f"closed with {e!r}, not 1001")
    code = server.wait(timeout=15)
    check(code == 0, f"the server exited with {code}, not 0")


async def test_startup_output(startup, expected):
    check(expected in startup, f"the server's start-up output lacks {expected!r}:\n{startup}")


def main():
    command = sys.argv[1:]  # the server's command line: counter-native, or stateroom serve counter.wasm
    expect_startup = None
    if command[:1] == ["--expect-startup"]:
        if len(command) < 3:
            print(__doc__)
            return 2
        expect_startup, command = command[1], command[2:]
    server = Server(command)
    base = f"ws://127.0.0.1:{server.port}"
    tests = []
    if expect_startup is not None:
        tests.append(("start-up output", test_startup_output("".join(server.startup), expect_startup)))
    tests += [
        ("quick start", test_quick_start(base)),
        ("rooms are separate counters", test_rooms_are_separate_counters(base)),
        ("other messages are ignored", test_other_messages_are_ignored(base)),
        ("status and bad room", test_status_and_bad_room(base, server.port)),
        ("graceful shutdown", test_graceful_shutdown(base, server.proc)),
    ]
    return run(server, tests)


if __name__ == "__main__":
    sys.exit(main())
