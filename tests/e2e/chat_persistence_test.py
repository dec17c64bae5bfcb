#!/usr/bin/env python3
"""The chat example's history outlives its server: natively through the service's snapshot() and
restore(), as WebAssembly with nothing in the service (the host keeps the module's memory).

Usage: chat_persistence_test.py PATH/TO/chat-native
       chat_persistence_test.py PATH/TO/stateroom serve PATH/TO/chat.wasm
With --state-dir in a temporary directory, a client (Python `websockets`) renames itself and says 60
numbered lines in a room; the server is stopped with SIGTERM and started again, and a newcomer gets
its welcome then the room's last 50 lines, in order, with the name they were said under. The same
after the room hibernates (--room-grace immediate). Exits non-zero on any failure.
"""
import asyncio
import os
import sys
import tempfile
import time

import websockets

from harness import Cases, check, start_with_state, stop

TIMEOUT = 5
KEPT = 50  # the lines chat shows a newcomer


async def say(base, room, name, lines):
    """Joins `room`, takes the name `name` and says `lines`, each handled before it returns."""
    async with websockets.connect(f"{base}/ws/{room}") as ws:
        welcome = await asyncio.wait_for(ws.recv(), TIMEOUT)
        check(welcome.startswith("welcome, "), f"the first message is {welcome!r}")
        await ws.send(f"/name {name}")
        while not (await asyncio.wait_for(ws.recv(), TIMEOUT)).endswith(f" is now {name}"):
            pass  # the history of an earlier visit comes first
        for line in lines:
            await ws.send(line)
        # chat does not echo a sender's lines; a rename goes to everyone, the sender too, so once it
        # comes back every line before it has been handled.
        await ws.send(f"/name {name}")
        while not (await asyncio.wait_for(ws.recv(), TIMEOUT)).endswith(f" is now {name}"):
            pass


async def history(ws):
    """The welcome, then the lines up to the newcomer's own rename (which comes after its history)."""
    welcome = await asyncio.wait_for(ws.recv(), TIMEOUT)
    check(welcome.startswith("welcome, "), f"the first message is {welcome!r}")
    await ws.send("/name newcomer")
    lines = []
    while not (line := await asyncio.wait_for(ws.recv(), TIMEOUT)).endswith(" is now newcomer"):
        lines.append(line)
    return lines


async def newcomer(base, room):
    async with websockets.connect(f"{base}/ws/{room}") as ws:
        return await history(ws)






def main(command):
    case = Cases()

    said = [f"line {i}" for i in range(60)]
    expected = [f"ann: {line}" for line in said[-KEPT:]]
    with tempfile.TemporaryDirectory(prefix="stateroom-chat-") as state:
        def restart():
            server, base = start_with_state(command, state)
            try:
                asyncio.run(say(base, "lobby", "ann", said))
            finally:
                stop(server)
            check(os.listdir(state) == ["r-lobby.snapshot"], f"the state directory holds {os.listdir(state)}")
            server, base = start_with_state(command, state)
            try:
                got = asyncio.run(newcomer(base, "lobby"))
                check(got == expected, f"after a restart a newcomer got {len(got)} lines: {got[:2]} ... {got[-2:]}")
            finally:
                log = stop(server)
            check("room 'lobby' restored from its snapshot" in log, "the log says the room was restored")

        def hibernate():
            server, base = start_with_state(command, state, "--room-grace", "immediate")
            try:
                asyncio.run(say(base, "quiet", "ann", said[:3]))
                deadline = time.monotonic() + 5
                while "r-quiet.snapshot" not in os.listdir(state) and time.monotonic() < deadline:
                    time.sleep(0.02)
                check("r-quiet.snapshot" in os.listdir(state), "the hibernated room left its snapshot")
                got = asyncio.run(newcomer(base, "quiet"))
                check(got == [f"ann: {line}" for line in said[:3]], f"after hibernation a newcomer got {got}")
            finally:
                stop(server)

        case("a restart keeps the room's history", restart)
        case("a hibernated room wakes with its history", hibernate)
    return case.exit_code()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
