#!/usr/bin/env python3
"""The per-address budgets, met by clients from another address: a network namespace for the
server and one for its clients, joined by a veth pair (10.200.0.1 the server; 10.200.0.2 the
attacker, 10.200.0.3 another user), made and removed by the test. Loopback clients, which every
other test uses, are exempt from these budgets: only here are they met from outside.

Usage: remote_clients_test.py PATH/TO/counter-native
       remote_clients_test.py PATH/TO/stateroom serve PATH/TO/counter.wasm

Needs root (or CAP_NET_ADMIN and CAP_SYS_ADMIN) for the namespaces. Without them it says so loudly
and exits 77 (ctest: skipped) — except under CI=true, where it fails: CI runs as root, so there it
must run. Each case starts its own server inside the server's namespace and stops it:

- --max-connections-per-ip 4: the attacker's fifth connection gets 503 while the other user still
  connects; once one of its four closes, it connects again.
- --max-new-rooms-per-ip 5 (bursts of 10): of 16 new rooms asked for at once, those past the burst
  are closed with 1013 "too many new rooms from this address"; the other user still creates a room;
  a second later the attacker creates rooms again.
- --max-inflate-rate (16 MiB a second, with --compression on): eight connections of the attacker
  each sending 512 KiB that compress to 1 KiB eight times a second (32 MiB a second together) are
  closed with 1008, while one of the other user's at the same pace goes on.
- IPv6 (--host ::, --max-connections-per-ip 2): two connections from two addresses of one /64, and
  a third from either is answered 503, while an address of another /64 connects.
- --max-rooms-per-ip 6 with a 2 s room grace: the attacker connects to 6 rooms and leaves each at
  once; the seventh is closed with 1013 "too many rooms from this address" while it may still join
  one of its own six and the other user creates rooms; once the six have ended it creates again.

Exits non-zero on any failure."""
import contextlib
import os
import socket
import subprocess
import sys
import threading
import time

from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from harness import SKIPPED, Cases, Server, check, stop

SERVER_ADDRESS, ATTACKER, OTHER = "10.200.0.1", "10.200.0.2", "10.200.0.3"
# IPv6: the server; two addresses of one /64 (one host); an address of another /64.
SERVER_V6, SAME_HOST_A, SAME_HOST_B, OTHER_V6 = "fd20::1", "fd20::a:1", "fd20::b:2", "fd21::2"
TIMEOUT = 5


def run(*command):
    return subprocess.run(command, capture_output=True, text=True)


def make_namespaces(server_ns, client_ns):
    """The two namespaces and their veth pair; the first failing step's message, or None."""
    veth_server, veth_client = f"srs{os.getpid()}", f"src{os.getpid()}"
    steps = [
        ["ip", "netns", "add", server_ns],
        ["ip", "netns", "add", client_ns],
        ["ip", "link", "add", veth_server, "type", "veth", "peer", "name", veth_client],
        ["ip", "link", "set", veth_server, "netns", server_ns],
        ["ip", "link", "set", veth_client, "netns", client_ns],
        ["ip", "-n", server_ns, "addr", "add", f"{SERVER_ADDRESS}/24", "dev", veth_server],
        ["ip", "-n", client_ns, "addr", "add", f"{ATTACKER}/24", "dev", veth_client],
        ["ip", "-n", client_ns, "addr", "add", f"{OTHER}/24", "dev", veth_client],
        ["ip", "-n", server_ns, "addr", "add", f"{SERVER_V6}/64", "dev", veth_server, "nodad"],
        ["ip", "-n", server_ns, "addr", "add", "fd21::1/64", "dev", veth_server, "nodad"],
        ["ip", "-n", client_ns, "addr", "add", f"{SAME_HOST_A}/64", "dev", veth_client, "nodad"],
        ["ip", "-n", client_ns, "addr", "add", f"{SAME_HOST_B}/64", "dev", veth_client, "nodad"],
        ["ip", "-n", client_ns, "addr", "add", f"{OTHER_V6}/64", "dev", veth_client, "nodad"],
        ["ip", "-n", server_ns, "link", "set", "lo", "up"],
        ["ip", "-n", server_ns, "link", "set", veth_server, "up"],
        ["ip", "-n", client_ns, "link", "set", "lo", "up"],
        ["ip", "-n", client_ns, "link", "set", veth_client, "up"],
    ]
    for step in steps:
        try:
            done = run(*step)
        except FileNotFoundError as e:
            return f"{' '.join(step)}: {e}"
        if done.returncode != 0:
            return f"{' '.join(step)}: {done.stderr.strip()}"
    return None


def outside(argv):
    """Makes the namespaces, runs the cases in the clients' namespace, removes the namespaces."""
    server_ns, client_ns = f"sr-server-{os.getpid()}", f"sr-clients-{os.getpid()}"
    try:
        failed = make_namespaces(server_ns, client_ns)
        if failed:
            print("=" * 78)
            print(f"NOT RUN: no network namespace with a veth pair could be made ({failed}).")
            print("The per-address budgets are not tested from another address on this machine.")
            print("=" * 78)
            if os.environ.get("CI"):
                print("CI runs as root: this test must run there; failing.")
                return 1
            return SKIPPED
        return subprocess.run(["ip", "netns", "exec", client_ns, sys.executable, os.path.abspath(__file__),
                               "--inside", server_ns, *argv]).returncode
    finally:
        for ns in (server_ns, client_ns):  # their veth ends go with them
            run("ip", "netns", "del", ns)


def raw_upgrade(port, source, path, server=SERVER_ADDRESS):
    """The first line of the server's answer to an upgrade from `source` ('' when none came)."""
    with socket.create_connection((server, port), timeout=TIMEOUT, source_address=(source, 0)) as s:
        s.sendall((f"GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                   "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
        answer = b""
        try:
            while b"\r\n" not in answer:
                chunk = s.recv(4096)
                if not chunk:
                    break
                answer += chunk
        except OSError:
            pass
        return answer.split(b"\r\n", 1)[0].decode(errors="replace")


def client(port, source, room):
    """A WebSocket client of `room` from address `source`."""
    s = socket.create_connection((SERVER_ADDRESS, port), timeout=TIMEOUT, source_address=(source, 0))
    try:
        return connect(f"ws://{SERVER_ADDRESS}:{port}/ws/{room}", sock=s, open_timeout=TIMEOUT, close_timeout=1)
    except BaseException:
        s.close()
        raise


def outcome(port, source, room):
    """'joined' when the room answered an increment, else how it was closed ('1013 <reason>')."""
    try:
        with client(port, source, room) as ws:
            ws.send("increment")
            reply = ws.recv(timeout=TIMEOUT)
            check(reply.startswith("new value: "), f"unexpected reply {reply!r}")
            return "joined"
    except ConnectionClosed as e:
        return f"{e.rcvd.code} {e.rcvd.reason}" if e.rcvd else "closed without a close frame"
    except InvalidStatus as e:
        return f"HTTP {e.response.status_code}"


def inside(server_ns, command):
    prefix = ["ip", "netns", "exec", server_ns]
    cases = Cases()

    def serving(*flags):
        server = Server(command + ["--log-level", "info", *flags], host=SERVER_ADDRESS, prefix=prefix)
        check(server.port is not None, "the server did not start:\n" + "".join(server.startup[-30:]))
        return server

    def connections_per_address():
        server = serving("--max-connections-per-ip", "4")
        try:
            held = []  # each connection in a stack of its own, to close one
            for _ in range(4):
                held.append(contextlib.ExitStack())
                held[-1].enter_context(client(server.port, ATTACKER, "held"))
            first = raw_upgrade(server.port, ATTACKER, "/ws/held")
            check(first.startswith("HTTP/1.1 503"), f"the attacker's fifth connection got {first!r}, not 503")
            check(outcome(server.port, OTHER, "held") == "joined", "another address was refused too")
            held.pop().close()
            deadline = time.monotonic() + TIMEOUT
            while (result := outcome(server.port, ATTACKER, "held")) != "joined" and time.monotonic() < deadline:
                time.sleep(0.05)
            check(result == "joined", f"the attacker was still refused after closing one: {result}")
            for connection in held:
                connection.close()
        finally:
            log = stop(server)
        check(f"refused a connection from {ATTACKER}" in log, "the refusal is not in the log")
        check(f"refused a connection from {OTHER}" not in log, "the other address was refused")

    def new_rooms_per_address():
        server = serving("--max-new-rooms-per-ip", "5")
        try:
            results = [outcome(server.port, ATTACKER, f"new-{i}") for i in range(16)]
            joined = results.count("joined")
            refused = results.count("1013 too many new rooms from this address")
            print(f"  16 new rooms asked for at once: {joined} created, {refused} refused")
            check(joined + refused == 16, f"unexpected outcomes: {results}")
            check(10 <= joined <= 13, f"{joined} rooms created, the burst is 10 (5 a second)")
            check(outcome(server.port, OTHER, "other-room") == "joined", "another address could not create a room")
            time.sleep(1.1)
            check(outcome(server.port, ATTACKER, "after-a-second") == "joined", "the rate did not refill")
        finally:
            stop(server)

    def rooms_alive_per_address():
        server = serving("--max-rooms-per-ip", "6", "--room-grace", "2s")
        try:
            started = time.monotonic()
            results = [outcome(server.port, ATTACKER, f"mine-{i}") for i in range(6)]
            check(results == ["joined"] * 6, f"the first six rooms: {results}")
            seventh = outcome(server.port, ATTACKER, "mine-6")
            check(time.monotonic() - started < 1.5, "too slow: the first rooms may have ended already")
            check(seventh == "1013 too many rooms from this address", f"the seventh room: {seventh}")
            check(outcome(server.port, ATTACKER, "mine-0") == "joined", "the attacker's own room was refused")
            for i in range(3):
                check(outcome(server.port, OTHER, f"theirs-{i}") == "joined", "another address was refused a room")
            deadline = time.monotonic() + 10
            while (later := outcome(server.port, ATTACKER, "mine-6")) != "joined" and time.monotonic() < deadline:
                time.sleep(0.25)
            check(later == "joined", f"its rooms ended, yet the attacker is still refused: {later}")
        finally:
            stop(server)

    def ipv6_by_its_64():
        server = Server(command + ["--log-level", "info", "--max-connections-per-ip", "2"], host="::", prefix=prefix)
        check(server.port is not None, "the server did not start:\n" + "".join(server.startup[-30:]))
        try:
            held = [socket.create_connection((SERVER_V6, server.port), timeout=TIMEOUT, source_address=(a, 0))
                    for a in (SAME_HOST_A, SAME_HOST_B)]
            time.sleep(0.2)  # both accepted and counted
            third = raw_upgrade(server.port, SAME_HOST_B, "/ws/v6", server=SERVER_V6)
            check(third.startswith("HTTP/1.1 503"), f"a third connection from the same /64 got {third!r}, not 503")
            other = raw_upgrade(server.port, OTHER_V6, "/ws/v6", server="fd21::1")
            check(other.startswith("HTTP/1.1 101"), f"another /64 got {other!r}")
            for h in held:
                h.close()
        finally:
            stop(server)

    def inflate_per_address():
        server = serving("--compression", "on")  # --max-inflate-rate 16 MiB a second, for an address
        message = "a" * (512 * 1024)  # about 1 KiB compressed
        closed = {}

        def bomber(source, name):
            try:
                with client(server.port, source, "bombs") as ws:
                    for _ in range(4 * 8):  # 8 a second for 4 s: 4 MiB a second inflated
                        ws.send(message)
                        time.sleep(0.125)
                    closed[name] = None
            except ConnectionClosed as e:
                closed[name] = e.rcvd.code if e.rcvd else "no close frame"

        try:
            threads = [threading.Thread(target=bomber, args=(ATTACKER, f"attacker-{i}")) for i in range(8)]
            threads.append(threading.Thread(target=bomber, args=(OTHER, "other")))
            for t in threads:
                t.start()
            for t in threads:
                t.join(timeout=30)
        finally:
            log = stop(server)
        attackers = [closed.get(f"attacker-{i}") for i in range(8)]
        print(f"  8 connections from one address at 4 MiB a second each: {attackers}; another address: "
              f"{closed.get('other')}")
        check(attackers.count(1008) >= 2, f"the address's connections went on past its budget: {attackers}")
        check(closed.get("other") is None, f"a client of another address within the rate was closed: {closed}")
        check("inflates more than --max-inflate-rate (16 MiB a second for its address)" in log,
              "the log does not say the address's budget was passed")

    cases("--max-connections-per-ip: the fifth connection from one address is refused", connections_per_address)
    cases("--max-inflate-rate: the compressed messages of all of one address's connections", inflate_per_address)
    cases("IPv6: the addresses of one /64 share one budget", ipv6_by_its_64)
    cases("--max-new-rooms-per-ip: rooms one address creates per second", new_rooms_per_address)
    cases("--max-rooms-per-ip: rooms alive that one address created", rooms_alive_per_address)
    return cases.exit_code()


def main(argv):
    if argv[:1] == ["--inside"]:
        return inside(argv[1], argv[2:])
    return outside(argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
