#!/usr/bin/env python3
"""No message lost, duplicated, reordered or leaked while clients die around it (Python `websockets`).

Usage: no_loss_test.py SERVER [ARGS...]   the chat example: chat-native, or stateroom serve chat.wasm

The server runs with two worker threads. In each of ROOMS rooms, STEADY clients each send MESSAGES
sequence-numbered messages (room, sender, client id, number, and a filler whose length follows the
number: a few are 1.5 KiB) in bursts, while churn clients join their room, send, and vanish: a TCP
reset, a FIN without a close frame, a frame cut in half then a reset, a reset after they stopped
reading, a child process killed with SIGKILL, or (for contrast) a clean close. One steady client
per room is a slow reader: it stops reading for a moment every so often, within the server's
send-queue limit. chat sends each message to everyone else in the room as "user<id>: text", says
"user<id> joined" to the others on connect and "user<id> left" on disconnect.

Every steady client must receive:
- every other steady client's messages of its room exactly once, in order, each intact and named
  by its sender's client id;
- of every churn client of its room, the same messages as the other steady clients (the room sends
  each message it handles to all its members), numbered 0, 1, 2... without a gap (a clean one: all it
  sent), never a part of a cut frame, one "joined" before them and one "left" after them;
- nothing from another room, and nothing it cannot account for.
No steady client is closed by the server, the server stays up, logs nothing at warning level or
above (a client closed for reading too slowly would be a warning), and exits 0 on SIGTERM.
The schedule of the churn is random with a fixed seed (printed); the checks are on content only, so
a slow machine makes the test slower, not flaky. Exits non-zero on any failure.
"""
import asyncio
import collections
import os
import random
import re
import socket
import sys
import time

import websockets

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "support"))
import abrupt_close  # noqa: E402
from server_process import ServerProcess  # noqa: E402

ROOMS = 4
STEADY = 3                  # steady clients per room; the first of each room is the slow reader
MESSAGES = 1000             # each steady client sends this many
BURST, PAUSE = 10, 0.05     # steady clients send BURST messages, then pause PAUSE s: 200 a second each
SLOW_EVERY, SLOW_PAUSE = 100, 0.25  # the slow reader stops reading for SLOW_PAUSE s every SLOW_EVERY messages
CHURN = 12                  # churn clients per room, over the first three quarters of the stream
KINDS = ["reset", "eof", "partial-frame", "deaf-reset", "sigkill", "clean"]
SEED = 7
TIMEOUT = 10                # for any one step (a welcome, a child's first line)
DEADLINE = 30               # for every steady client to have everything
STREAM = MESSAGES / BURST * PAUSE  # seconds the steady clients send for, at least

WELCOME = re.compile(r"welcome, user(\d+); /name X renames you")
NOTICE = re.compile(r"user(\d+) (joined|left)")


def payload(room, sender, client_id, seq):
    """The text of message `seq`; a recipient rebuilds it from the first four fields to check it."""
    filler = 1500 if seq % 50 == 7 else 10 + seq % 40
    return f"{room} {sender} {client_id} {seq} " + "x" * filler


class Received:
    """What one steady client received, in order of arrival."""

    def __init__(self, room, name):
        self.room, self.name = room, name
        self.client_id = None
        self.count = 0
        self.seqs = collections.defaultdict(list)  # sender -> message numbers in arrival order
        self.first = {}                            # sender -> arrival index of its first message
        self.last = {}                             # sender -> arrival index of its last message
        self.ids = {}                              # sender -> its client id, as its messages say
        self.joined = collections.defaultdict(list)  # client id -> arrival indexes of "joined"
        self.left = collections.defaultdict(list)    # client id -> arrival indexes of "left"
        self.problems = []
        self.closing = False

    def problem(self, text):
        if len(self.problems) < 20:
            self.problems.append(f"{self.name}: {text}")

    def take(self, text):
        self.count += 1
        if not isinstance(text, str):
            return self.problem(f"a binary message: {text[:60]!r}")
        notice = NOTICE.fullmatch(text)
        if notice:
            (self.joined if notice.group(2) == "joined" else self.left)[int(notice.group(1))].append(self.count)
            return
        prefix, sep, body = text.partition(": ")
        fields = body.split(" ", 4)
        if not sep or len(fields) != 5 or not fields[3].isdigit():
            return self.problem(f"a message it cannot account for: {text[:80]!r}")
        room, sender, client_id, seq = fields[0], fields[1], fields[2], int(fields[3])
        if room != self.room:
            return self.problem(f"a message of room {room} leaked into room {self.room}: {text[:80]!r}")
        if prefix != f"user{client_id}":
            self.problem(f"{sender}'s message {seq} is attributed to {prefix}, not user{client_id}")
        if body != payload(room, sender, client_id, seq):
            self.problem(f"{sender}'s message {seq} arrived altered: {body[:80]!r}")
        self.seqs[sender].append(seq)
        self.ids[sender] = int(client_id)
        self.first.setdefault(sender, self.count)
        self.last[sender] = self.count


def in_order(seqs, expected):
    """None if `seqs` is exactly 0..expected-1, else what is wrong with it."""
    if seqs == list(range(expected)):
        return None
    for i, s in enumerate(seqs):
        if s != i:
            kind = "again" if s < i else "after a gap"
            return f"{len(seqs)} messages; at position {i} came number {s} ({kind})"
    return f"only {len(seqs)} of {expected} messages"


async def welcome(ws):
    text = await asyncio.wait_for(ws.recv(), TIMEOUT)
    m = WELCOME.fullmatch(text)
    if not m:
        raise AssertionError(f"the first message is not the welcome: {text!r}")
    return int(m.group(1))


async def read_all(ws, rec, slow):
    try:
        async for text in ws:
            rec.take(text)
            if slow and rec.count % SLOW_EVERY == 0:
                await asyncio.sleep(SLOW_PAUSE)
    except websockets.exceptions.ConnectionClosed as e:
        if not rec.closing:
            rec.problem(f"closed before the end: {e!r}")
    else:
        if not rec.closing:
            rec.problem("closed before the end")


async def steady(url, rec, slow, everyone_in, done):
    options = {}
    if slow:  # small buffers on its side, so that what it has not read waits in the server
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", int(url.split(":")[2].split("/")[0])))
        options = {"sock": sock, "max_queue": 2}
    async with websockets.connect(url, ping_interval=None, max_size=2**20, **options) as ws:
        rec.client_id = await welcome(ws)
        await everyone_in.wait()  # every steady client is a member before anyone sends
        reader = asyncio.create_task(read_all(ws, rec, slow))
        for seq in range(MESSAGES):
            await ws.send(payload(rec.room, rec.name, rec.client_id, seq))
            if seq % BURST == BURST - 1:
                await asyncio.sleep(PAUSE)
        await done.wait()
        rec.closing = True
        await ws.close()
        await reader


class Churn:
    """One churn client: when it comes, how long it stays, how it goes, and what it did."""

    def __init__(self, room, index, rng):
        self.room = room
        self.name = f"c{room[1:]}.{index}"
        self.kind = KINDS[(index + int(room[1:])) % len(KINDS)]
        self.start = rng.uniform(0.05, 0.75) * STREAM
        self.life = rng.uniform(0.2, 1.2)
        self.client_id = None
        self.sent = 0  # whole messages written (unknown for a killed child process)

    async def run(self, url):
        await asyncio.sleep(self.start)
        if self.kind == "sigkill":
            return await self.run_child(url)
        ws = await websockets.connect(url, ping_interval=None, max_size=2**20)
        self.client_id = await welcome(ws)
        reader = None
        if self.kind != "deaf-reset":  # the others read what the room sends them
            reader = asyncio.create_task(drain(ws))
        end = time.monotonic() + self.life
        while time.monotonic() < end:
            await ws.send(payload(self.room, self.name, self.client_id, self.sent))
            self.sent += 1
            if self.sent % 2 == 0:
                await asyncio.sleep(0.02)
        if self.kind == "clean":
            await ws.close()
        elif self.kind == "partial-frame":
            await abrupt_close.partial_frame(ws)
        elif self.kind == "eof":
            abrupt_close.eof(ws)
        else:  # reset, deaf-reset
            abrupt_close.reset(ws)
        if reader:
            await reader

    async def run_child(self, url):
        child = await asyncio.create_subprocess_exec(
            sys.executable, os.path.abspath(__file__), "--churn-child", url, self.room, self.name,
            stdout=asyncio.subprocess.PIPE)
        try:
            line = (await asyncio.wait_for(child.stdout.readline(), TIMEOUT)).decode()
            if not line.startswith("id "):
                raise AssertionError(f"{self.name}: the child process said {line!r}")
            self.client_id = int(line.split()[1])
            await asyncio.sleep(self.life)
        finally:
            child.kill()  # SIGKILL: the kernel closes its socket
            await child.wait()


async def drain(ws):
    try:
        async for _ in ws:
            pass
    except websockets.exceptions.ConnectionClosed:
        pass


async def churn_child(url, room, name):
    """A churn client in a process of its own, sending until it is killed."""
    async with websockets.connect(url, ping_interval=None, max_size=2**20) as ws:
        client_id = await welcome(ws)
        print(f"id {client_id}", flush=True)
        reader = asyncio.create_task(drain(ws))
        seq = 0
        while True:
            await ws.send(payload(room, name, client_id, seq))
            seq += 1
            if seq % 2 == 0:
                await asyncio.sleep(0.02)
        await reader


def everything_arrived(recs, churn):
    """Every steady client has every other steady client's messages and every churn client's "left"."""
    for rec in recs:
        peers = [r for r in recs if r.room == rec.room and r is not rec]
        if any(len(rec.seqs[p.name]) < MESSAGES for p in peers):
            return False
        if any(not rec.left[c.client_id] for c in churn if c.room == rec.room and c.client_id):
            return False
    return True


def check(recs, churn):
    problems = []
    for rec in recs:
        problems += rec.problems
        for peer in (r for r in recs if r.room == rec.room and r is not rec):
            wrong = in_order(rec.seqs[peer.name], MESSAGES)
            if wrong:
                problems.append(f"{rec.name} from {peer.name}: {wrong}")
            if rec.ids.get(peer.name) != peer.client_id:
                problems.append(f"{rec.name}: {peer.name}'s messages name client {rec.ids.get(peer.name)}")
        for c in (c for c in churn if c.room == rec.room):
            if c.client_id is None:
                problems.append(f"{c.name} ({c.kind}) never got its welcome")
                continue
            got = rec.seqs[c.name]
            wrong = in_order(got, len(got))
            if wrong:
                problems.append(f"{rec.name} from {c.name} ({c.kind}): {wrong}")
            if c.kind == "clean" and len(got) != c.sent:
                problems.append(f"{rec.name} from {c.name} (clean): {len(got)} of the {c.sent} messages it sent")
            if len(got) > c.sent and c.kind != "sigkill":
                problems.append(f"{rec.name} from {c.name} ({c.kind}): {len(got)} messages, it sent {c.sent}")
            joined, left = rec.joined[c.client_id], rec.left[c.client_id]
            if len(joined) != 1 or len(left) != 1:
                problems.append(f"{rec.name}: user{c.client_id} ({c.name}, {c.kind}) joined {len(joined)} and "
                                f"left {len(left)} time(s), not once each")
            elif got and not joined[0] < rec.first[c.name] <= rec.last[c.name] < left[0]:
                problems.append(f"{rec.name}: {c.name}'s messages are not between its joined and its left")
    # The room sends each message it handles to all its members: the steady clients of a room got
    # the same messages of each churn client.
    for c in churn:
        counts = {len(r.seqs[c.name]) for r in recs if r.room == c.room}
        if len(counts) != 1:
            problems.append(f"the steady clients of {c.room} got different numbers of {c.name}'s messages: {counts}")
    return problems


async def run(port):
    base = f"ws://127.0.0.1:{port}/ws"
    rooms = [f"r{i}" for i in range(ROOMS)]
    recs = [Received(room, f"s{room[1:]}.{i}") for room in rooms for i in range(STEADY)]
    rng = random.Random(SEED)
    churn = [Churn(room, i, rng) for room in rooms for i in range(CHURN)]
    everyone_in = asyncio.Event()
    done = asyncio.Event()
    steady_tasks = [asyncio.create_task(steady(f"{base}/{r.room}", r, r.name.endswith(".0"), everyone_in, done))
                    for r in recs]
    end = time.monotonic() + TIMEOUT
    while any(r.client_id is None for r in recs) and time.monotonic() < end:
        if any(t.done() for t in steady_tasks):
            break
        await asyncio.sleep(0.01)
    everyone_in.set()
    churn_results = await asyncio.gather(*(c.run(f"{base}/{c.room}") for c in churn), return_exceptions=True)
    failures = [f"{c.name} ({c.kind}): {e!r}" for c, e in zip(churn, churn_results) if isinstance(e, BaseException)]
    end = time.monotonic() + DEADLINE
    while not everything_arrived(recs, churn) and time.monotonic() < end:
        if any(t.done() for t in steady_tasks):
            break
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.5)  # a moment more, for anything that would arrive twice
    done.set()
    for r, result in zip(recs, await asyncio.gather(*steady_tasks, return_exceptions=True)):
        if isinstance(result, BaseException):
            failures.append(f"{r.name}: {result!r}")
    return failures + check(recs, churn), recs, churn


def main():
    if sys.argv[1:2] == ["--churn-child"]:
        asyncio.run(churn_child(*sys.argv[2:5]))
        return 0
    if len(sys.argv) < 2:
        print(__doc__)
        return 2
    started = time.monotonic()
    server = ServerProcess(sys.argv[1:] + ["--threads", "2"])
    try:
        problems, recs, churn = asyncio.run(run(server.port))
        if not server.running():
            problems.append("the server died")
        code = server.stop()
        if code != 0:
            problems.append(f"the server exited with {code} on SIGTERM, not 0")
        problems += [f"the server logged: {line}" for line in server.problems()]
    finally:
        server.kill()
    delivered = sum(r.count for r in recs)
    kinds = collections.Counter(c.kind for c in churn)
    print(f"seed {SEED}: {ROOMS} rooms x {STEADY} steady clients x {MESSAGES} messages; {len(churn)} churn "
          f"clients ({', '.join(f'{n} {k}' for k, n in sorted(kinds.items()))}) sending "
          f"{sum(c.sent for c in churn)} messages (and the killed processes' own); {delivered} messages "
          f"received by the steady clients; {time.monotonic() - started:.1f} s")
    if problems:
        for p in problems[:40]:
            print(f"FAILED: {p}")
        if len(problems) > 40:
            print(f"... and {len(problems) - 40} more")
        print("server output (last 40 lines):\n" + server.tail())
        return 1
    print("ok: every steady client got every message of its room exactly once, in order, and nothing else")
    return 0


if __name__ == "__main__":
    sys.exit(main())
