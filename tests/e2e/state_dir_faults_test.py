#!/usr/bin/env python3
"""The state directory on a read-only and on a full file system: a clear error, the server keeps
serving, and the rooms' state stays in memory.

Usage: state_dir_faults_test.py PATH/TO/counter-native
       state_dir_faults_test.py PATH/TO/stateroom serve PATH/TO/counter.wasm
Re-runs itself in a mount namespace of its own (`unshare -m`, which needs root or CAP_SYS_ADMIN;
without it the test exits 77, which ctest reports as skipped) and mounts two small tmpfs there: one
remounted read-only, one filled up. For each, a server with --state-dir on it and --room-grace
immediate: the counter counts to 3 in a room that then hibernates (its snapshot cannot be written:
the log says so, naming the directory), wakes from the snapshot kept in memory and goes on to 4,
another room works meanwhile, and SIGTERM still exits 0, its log naming the rooms whose state
could not be written (tried once more as the server stops). Exits non-zero on any failure.
"""
import asyncio
import sys
import time

import websockets

from harness import Cases, check, in_mount_namespace, read_only_and_full_tmpfs, start_with_state, stop

TIMEOUT = 5


async def increment(base, room, times):
    async with websockets.connect(f"{base}/ws/{room}") as ws:
        value = None
        for _ in range(times):
            await ws.send("increment")
            reply = await asyncio.wait_for(ws.recv(), TIMEOUT)
            check(reply.startswith("new value: "), f"unexpected reply {reply!r}")
            value = int(reply.removeprefix("new value: "))
        return value


def wait_for_log(server, text, timeout=5):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(text in line for line in server.startup + server.output):
            return True
        time.sleep(0.02)
    return False


def run_against(command, state, expected_error):
    server, base = start_with_state(command, state, "--room-grace", "immediate")
    try:
        check(asyncio.run(increment(base, "a", 3)) == 3, "counting to 3")
        check(wait_for_log(server, expected_error),
              f"no '{expected_error}' in the log:\n" + "".join((server.startup + server.output)[-20:]))
        check(asyncio.run(increment(base, "b", 1)) == 1, "another room, after the failed write")
        check(asyncio.run(increment(base, "a", 1)) == 4, "the hibernated room wakes from the state kept in memory")
    finally:
        log = stop(server)
    check("the state of 2 room(s) could not be written" in log and "is lost: 'a', 'b'" in log,
          "the log does not name the rooms whose state is lost at exit:\n" + "".join(server.output[-20:]))
    return log


def inside(command):
    case = Cases()
    with read_only_and_full_tmpfs("stateroom-faults-") as (read_only, full):
        def on_read_only():
            log = run_against(command, read_only, "state directory: cannot")
            check("cannot be written" in log and read_only in log,
                  "the log does not say at start that the directory cannot be written")

        def on_full():
            log = run_against(command, full, "state directory: cannot")
            check("No space left on device" in log, "the log does not say the disk is full")

        case("a read-only state directory: a clear error, the state stays in memory", on_read_only)
        case("a full state directory: a clear error, the state stays in memory", on_full)
    return case.exit_code()


def main(argv):
    return in_mount_namespace(__file__, argv, inside)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
