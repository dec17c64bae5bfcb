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
import re
import signal
import subprocess
import sys
import threading
import urllib.error
import urllib.request

import websockets

TIMEOUT = 5


def check(condition, message):
    """An assertion that also holds under `python -O`, with what went wrong."""
    if not condition:
        raise AssertionError(message)


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
    server = subprocess.Popen(command + ["--port", "0", "--host", "127.0.0.1"], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
    port = None
    startup = []  # what the server printed up to its "listening on" line
    for line in server.stdout:
        startup.append(line)
        m = re.search(r"listening on \S+:(\d+)", line)
        if m:
            port = int(m.group(1))
            break
    if port is None:
        print("the server did not start:\n" + "".join(startup[-50:]))
        return 1
    # Keep reading what the server prints, so that a chatty server never blocks on a full pipe.
    output = []
    threading.Thread(target=lambda: output.extend(server.stdout), daemon=True).start()
    base = f"ws://127.0.0.1:{port}"
    tests = []
    if expect_startup is not None:
        tests.append(("start-up output", test_startup_output("".join(startup), expect_startup)))
    tests += [
        ("quick start", test_quick_start(base)),
        ("rooms are separate counters", test_rooms_are_separate_counters(base)),
        ("other messages are ignored", test_other_messages_are_ignored(base)),
        ("status and bad room", test_status_and_bad_room(base, port)),
        ("graceful shutdown", test_graceful_shutdown(base, server)),
    ]
    passed = failed = 0
    try:
        for name, coro in tests:
            try:
                asyncio.run(coro)
                passed += 1
                print(f"ok: {name}")
            except Exception as e:  # noqa: BLE001 - report every failure and go on
                failed += 1
                print(f"FAILED: {name}: {e!r}")
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
    if failed:
        print("server output:\n" + "".join(output[-50:]))
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
