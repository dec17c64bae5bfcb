#!/usr/bin/env python3
"""A state directory that cannot be written, under hibernation churn: the snapshots it holds in
memory count against --total-memory-limit, so the server's memory stays bounded and new rooms are
refused (1013) instead.

Usage: state_dir_memory_test.py PATH/TO/stateroom serve PATH/TO/ballast.wasm
Re-runs itself in a mount namespace of its own (`unshare -m`, which needs root or CAP_SYS_ADMIN;
without it the test exits 77, which ctest reports as skipped) and mounts a small tmpfs there, once
remounted read-only and once filled up. For each, a server with --state-dir on it, --room-grace
immediate, --memory-limit 16MiB and --total-memory-limit 64MiB: 30 clients in turn each take a room
of the `ballast` example, grow it to 4 MiB of incompressible state and leave (it hibernates; its
snapshot cannot be written and stays in memory). Without the budget the server would hold 120 MiB
of snapshots; with it, the server's resident memory grows by at most the budget and a margin, the
rooms past the budget are refused with 1013 (said in the log), and so is the first room when it
comes back (waking needs memory the snapshots hold): refused, never started afresh over its state.
Exits non-zero on any failure.
"""
import asyncio
import sys

import websockets

from harness import Cases, check, in_mount_namespace, read_only_and_full_tmpfs, start_with_state, stop

TIMEOUT = 10
ROOMS, MIB, BUDGET_MIB, MARGIN_MIB = 30, 4, 64, 40


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


async def churn(base):
    """Each room grown and left in turn; how many were refused with 1013."""
    refused = 0
    for i in range(ROOMS):
        try:
            async with websockets.connect(f"{base}/ws/churn-{i}", max_size=None) as ws:
                await ws.send(f"grow {MIB}")
                reply = await asyncio.wait_for(ws.recv(), TIMEOUT)
                check(reply == f"size {MIB}", f"room churn-{i}: {reply!r}")
        except websockets.exceptions.ConnectionClosed as e:
            check(e.rcvd is not None and e.rcvd.code == 1013, f"room churn-{i} closed with {e!r}, not 1013")
            refused += 1
        await asyncio.sleep(0.05)  # its hibernation
    return refused


async def first_room(base):
    """What the first room answers to `check`, or its close code."""
    try:
        async with websockets.connect(f"{base}/ws/churn-0", max_size=None) as ws:
            await ws.send("check")
            return await asyncio.wait_for(ws.recv(), TIMEOUT)
    except websockets.exceptions.ConnectionClosed as e:
        return e.rcvd.code if e.rcvd else None


def run_against(command, state):
    server, base = start_with_state(command, state, "--room-grace", "immediate", "--memory-limit", "16MiB",
                                    "--total-memory-limit", f"{BUDGET_MIB}MiB")
    try:
        before = rss_mib(server.proc.pid)
        refused = asyncio.run(churn(base))
        after = rss_mib(server.proc.pid)
        print(f"  resident memory {before:.0f} MiB -> {after:.0f} MiB after {ROOMS} rooms of {MIB} MiB; "
              f"{refused} refused with 1013")
        check(after - before <= BUDGET_MIB + MARGIN_MIB,
              f"the server grew by {after - before:.0f} MiB, past the budget of {BUDGET_MIB} MiB and a margin")
        check(refused > 0, "no room was refused: the snapshots held in memory were not counted")
        first = asyncio.run(first_room(base))
        check(first == 1013, f"the first room, its snapshot held in memory, answered {first!r}, not 1013")
    finally:
        log = stop(server)
    check("the memory of all rooms is at its limit" in log, "the log does not say why rooms were refused")
    return log


def inside(command):
    case = Cases()
    with read_only_and_full_tmpfs("stateroom-memory-") as (read_only, full):
        case("a read-only state directory: memory bounded by the budget, rooms past it refused",
             lambda: run_against(command, read_only))
        case("a full state directory: memory bounded by the budget, rooms past it refused",
             lambda: run_against(command, full))
    return case.exit_code()


def main(argv):
    return in_mount_namespace(__file__, argv, inside)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
