#!/usr/bin/env python3
"""Rooms that outlive their server: the counter with a state directory, as a user runs it.

Usage: persistence_test.py PATH/TO/counter-native
       persistence_test.py PATH/TO/stateroom serve PATH/TO/counter.wasm
Starts the server with --state-dir in a temporary directory, counts to 3 in two rooms with an
independent client (Python `websockets`), stops the server with SIGTERM (as Ctrl-C does) and starts
it again: `increment` then says "new value: 4" in the one room and "new value: 2" in the other.
Then the same across hibernation (a room empty past its grace period is dropped and comes back
from its snapshot on the next connect) and across SIGKILL, which loses at most what happened since
the last periodic snapshot (--snapshot-interval 200ms here). Exits non-zero on any failure.
"""
import asyncio
import os
import signal
import sys
import tempfile
import time

import websockets

from harness import Cases, check, start_with_state, stop

TIMEOUT = 5


async def increment(base, room, times):
    """Sends `increment` `times` times in `room`; the last value the room said."""
    async with websockets.connect(f"{base}/ws/{room}") as ws:
        value = None
        for _ in range(times):
            await ws.send("increment")
            reply = await asyncio.wait_for(ws.recv(), TIMEOUT)
            check(reply.startswith("new value: "), f"unexpected reply {reply!r}")
            value = int(reply.removeprefix("new value: "))
        return value


def main(command):
    case = Cases()

    with tempfile.TemporaryDirectory(prefix="stateroom-state-") as state:
        def restart():
            server, base = start_with_state(command, state)
            try:
                check(asyncio.run(increment(base, "game", 3)) == 3, "counting to 3")
                check(asyncio.run(increment(base, "other%20room", 1)) == 1, "another room")
            finally:
                log = stop(server)
            files = sorted(os.listdir(state))
            check(files == ["r-game.snapshot", "r-other%20room.snapshot"], f"the state directory holds {files}")
            server, base = start_with_state(command, state)
            try:
                check(asyncio.run(increment(base, "game", 1)) == 4, "the count goes on from 3 after a restart")
                check(asyncio.run(increment(base, "other%20room", 1)) == 2, "the other room goes on from 1")
                check(asyncio.run(increment(base, "new", 1)) == 1, "a new room starts at 0")
            finally:
                log = stop(server)
            check("room 'game' restored from its snapshot" in log, "the log says the room was restored")

        def hibernate():
            server, base = start_with_state(command, state, "--room-grace", "immediate")
            try:
                check(asyncio.run(increment(base, "sleepy", 2)) == 2, "counting to 2")
                # The room ends once its client has gone (grace: immediate): a snapshot, no service.
                deadline = time.monotonic() + 5
                while "r-sleepy.snapshot" not in os.listdir(state) and time.monotonic() < deadline:
                    time.sleep(0.02)
                check("r-sleepy.snapshot" in os.listdir(state), "the hibernated room left its snapshot")
                check(asyncio.run(increment(base, "sleepy", 1)) == 3, "the room wakes with its count")
            finally:
                stop(server)

        def killed():
            server, base = start_with_state(command, state, "--snapshot-interval", "200ms")
            try:
                check(asyncio.run(increment(base, "crash", 5)) == 5, "counting to 5")
                time.sleep(0.6)  # a periodic snapshot or two
            finally:
                stop(server, signal.SIGKILL)
            server, base = start_with_state(command, state)
            try:
                check(asyncio.run(increment(base, "crash", 1)) == 6, "the last periodic snapshot survives SIGKILL")
            finally:
                stop(server)

        case("a restart keeps every room's state", restart)
        case("a hibernated room wakes with its state", hibernate)
        case("SIGKILL loses at most the last snapshot interval", killed)
    return case.exit_code()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
