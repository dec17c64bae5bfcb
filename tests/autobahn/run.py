#!/usr/bin/env python3
"""The Autobahn|Testsuite fuzzing-client cases, 1.* to 10.* (or 12.* and 13.* with compression), against
a server under test.

Usage: run.py [--name NAME] [--report-dir DIR] [--compression [--quick]] [--cases GLOB]... [--timeout S]
              -- COMMAND...

COMMAND starts the server; `{port}` in it is replaced by a free port on 127.0.0.1, e.g.

    run.py --name native -- build/bin/mirror-native --host 127.0.0.1 --port {port} \\
        --max-message-size 20MiB --max-queued 64MiB
    run.py --name wasm -- build/bin/stateroom serve build/wasm/mirror.wasm --host 127.0.0.1 \\
        --port {port} --max-message-size 20MiB --max-queued 64MiB

The server must send every message back to its sender unchanged (examples/mirror); the 9.* cases
send messages of up to 16 MiB, hence the larger limits. The cases are those of the Autobahn
TestSuite, run by `kosoku` (PyPI; installed here when missing), one connection per case, to
ws://127.0.0.1:{port}/ws/autobahn. Without --compression no case offers the extension. With
--compression the server must have permessage-deflate on (`--compression on`), and the compression
cases 12.* and 13.* run instead: every window size and context-takeover mode a client may offer, a
thousand messages of 16 bytes to 128 KiB per case (longer than 10 minutes on 2 cores); --quick keeps
those of up to 16 KiB (every data set and mode, 108 cases, about half a minute). They run 4 at a time
(--concurrency): each is a thousand round trips with a minute or more to finish, so the client's work and the
server's overlap; cases 1.* to 10.* run one at a time, as several expect an answer within a second.
`--cases` replaces either list (with --compression, `--cases '*'` runs all of them).

Prints the counts by behaviour and every case that is not plainly OK, writes kosoku's reports
(index.json and index.html, one JSON and one HTML file per case) and the server's log (server.log)
into the report directory, and stops the server (SIGTERM, as a user would) in every case.

Exit status: 0 when every case's behaviour is OK or INFORMATIONAL, its close behaviour
OK or INFORMATIONAL, and the server shut down cleanly; 1 otherwise (a FAILED or UNIMPLEMENTED case,
a server that did not start or crashed, a run past --timeout); 2 for a bad command line.
"""
from __future__ import annotations

import argparse
import asyncio
import collections
import importlib
import importlib.metadata
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

KOSOKU_VERSION = "0.1.0"
# 1.* to 10.*: the suite has no 8.* (its cases were dropped from Autobahn long ago).
DEFAULT_CASES = [f"{major}.*" for major in (1, 2, 3, 4, 5, 6, 7, 9, 10)]
# 12.* and 13.* need permessage-deflate: run with --compression only; without it an explicit --cases
# glob such as `*` must not bring them in.
COMPRESSION_CASES = ["12.*", "13.*"]
# --quick: the compression cases with messages of up to 16 KiB, whole (x.y.1 to x.y.7) and in
# 256-byte fragments (x.y.11, x.y.12): every data set, every negotiation and fragmentation mode.
# The others send a thousand messages of 32 to 128 KiB each: longer than 10 minutes on 2 cores.
# Case ids, not globs: kosoku matches a glob's start only (12.*.1 would take 12.1.10 to 12.1.18).
QUICK_COMPRESSION_CASES = [f"{major}.{group}.{size}" for major, groups in ((12, 5), (13, 7))
                           for group in range(1, groups + 1) for size in (1, 2, 3, 4, 5, 6, 7, 11, 12)]
ACCEPTED_BEHAVIOR = {"OK", "INFORMATIONAL"}
ACCEPTED_CLOSE = {"OK", "INFORMATIONAL"}
STARTUP_TIMEOUT = 30.0  # seconds for the server to answer GET /status
SHUTDOWN_TIMEOUT = 15.0  # seconds for the server to exit after SIGTERM


def ensure_kosoku():
    """Imports kosoku, installing the pinned version from PyPI first when it is missing."""
    try:
        return importlib.import_module("kosoku")
    except ImportError:
        pass
    print(f"installing kosoku {KOSOKU_VERSION} (the Autobahn case runner) from PyPI", flush=True)
    install = [sys.executable, "-m", "pip", "install", "-q", f"kosoku=={KOSOKU_VERSION}"]
    # Like run.sh for websockets: a Debian-managed Python refuses a plain install.
    if subprocess.run(install, stderr=subprocess.DEVNULL).returncode != 0:
        subprocess.run(install + ["--break-system-packages"], check=True)
    importlib.invalidate_caches()
    return importlib.import_module("kosoku")


def give_compression_cases_bytes() -> None:
    """Works around kosoku 0.1.0 handing the 12.* and 13.* cases a message the server sent
    uncompressed as a str (text decoded, binary as latin-1) where Autobahn hands them bytes: the
    cases hash what they receive, and a str cannot be hashed, so any uncompressed echo (which RFC
    7692 allows: a message is compressed or not, frame by frame) would fail them. Each case's
    onMessage gets the bytes that were on the wire, as with Autobahn itself."""
    from kosoku.cases import CASES

    def wrap(on_message):
        def on_message_bytes(self, msg, binary):
            if isinstance(msg, str):
                msg = msg.encode("latin-1" if binary else "utf-8")
            return on_message(self, msg, binary)
        return on_message_bytes

    for case_id, case in CASES.items():
        if case_id.startswith(("12.", "13.")) and not getattr(case.onMessage, "_gets_bytes", False):
            case.onMessage = wrap(case.onMessage)
            case.onMessage._gets_bytes = True


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_status(server: subprocess.Popen, port: int) -> bool:
    """Polls GET /status until it answers 200; false if the server exits or the time runs out."""
    direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: never a proxy
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        if server.poll() is not None:
            return False
        try:
            with direct.open(f"http://127.0.0.1:{port}/status", timeout=2) as r:
                if r.status == 200:
                    return True
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.1)
    return False


def stop(server: subprocess.Popen) -> int | None:
    """SIGTERM, then SIGKILL after SHUTDOWN_TIMEOUT; the exit status of a graceful exit, else None."""
    if server.poll() is not None:
        return server.returncode
    server.send_signal(signal.SIGTERM)
    try:
        return server.wait(timeout=SHUTDOWN_TIMEOUT)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()
        return None


async def run_cases(kosoku, url: str, cases: list[str], excluded: list[str], concurrency: int):
    """Every selected case's result, whether or not some failed."""
    try:
        return await kosoku.run_fuzzingclient(url, cases, excluded, concurrency=concurrency)
    except kosoku.FailureError as failure:
        return failure.results  # all the results, the failed ones among them


def accepted(result) -> bool:
    return result.behavior.value in ACCEPTED_BEHAVIOR and result.behavior_close.value in ACCEPTED_CLOSE


def summarize(name: str, results, seconds: float) -> list[str]:
    """The summary's lines: counts by (behaviour, close behaviour), then each case not plainly OK."""
    lines = [f"autobahn {name}: {len(results)} cases in {seconds:.1f} s"]
    counts = collections.Counter((r.behavior.value, r.behavior_close.value) for r in results)
    for (behavior, close), n in sorted(counts.items()):
        lines.append(f"  {n:4d}  behavior {behavior}, close {close}")
    for r in results:
        if r.behavior.value == "OK" and r.behavior_close.value == "OK":
            continue
        verdict = "ok" if accepted(r) else "NOT ACCEPTED"
        close_codes = f"server sent close {r.remote_close_code}" if r.remote_close_code else "no close from the server"
        lines.append(f"  {r.case_id}: {r.behavior.value} / close {r.behavior_close.value} ({verdict})")
        lines.append(f"      case: {re.sub(r'<[^>]*>', '', r.description).strip()}")  # the text has HTML tags
        lines.append(f"      result: {r.result}; close: {r.result_close}; {close_codes}")
    return lines


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        description="Runs the Autobahn fuzzing-client cases 1.* to 10.* (or 12.* and 13.* with --compression) "
                    "against a server.",
        usage="%(prog)s [options] -- COMMAND... (with {port} in COMMAND)")
    parser.add_argument("--name", default="server", help="the server's name in the summary (default: server)")
    parser.add_argument("--report-dir", type=Path,
                        help="where the reports and server.log go (default: autobahn-reports/NAME)")
    parser.add_argument("--compression", action="store_true",
                        help="the server offers permessage-deflate: run the compression cases 12.* and 13.* instead")
    parser.add_argument("--quick", action="store_true",
                        help="with --compression, only the compression cases with messages of up to 16 KiB")
    parser.add_argument("--cases", action="append", metavar="GLOB",
                        help="a case id or glob to run instead of the default ones (repeatable)")
    parser.add_argument("--concurrency", type=int,
                        help="cases run at once (default: 1, or 4 with --compression)")
    parser.add_argument("--timeout", type=float, default=600,
                        help="seconds the cases may take altogether (default: 600)")
    if "--" not in argv:
        parser.error("the server's command line goes after --")
    split = argv.index("--")
    options = parser.parse_args(argv[:split])
    command = argv[split + 1:]
    if not any("{port}" in arg for arg in command):
        parser.error("the server's command line must contain {port}")
    report_dir = options.report_dir or Path("autobahn-reports") / options.name
    report_dir.mkdir(parents=True, exist_ok=True)
    if options.quick and not options.compression:
        parser.error("--quick selects among the compression cases: it needs --compression")
    compression_cases = QUICK_COMPRESSION_CASES if options.quick else COMPRESSION_CASES
    cases = options.cases or (compression_cases if options.compression else DEFAULT_CASES)
    excluded = [] if options.compression else COMPRESSION_CASES
    concurrency = options.concurrency if options.concurrency is not None else (4 if options.compression else 1)
    if concurrency < 1:
        parser.error("--concurrency must be at least 1")

    kosoku = ensure_kosoku()
    give_compression_cases_bytes()
    from kosoku._report import write_reports  # the writer of kosoku's own CLI, for its report format

    port = free_port()
    command = [arg.replace("{port}", str(port)) for arg in command]
    url = f"ws://127.0.0.1:{port}/ws/autobahn"
    print(f"autobahn {options.name}: kosoku {importlib.metadata.version('kosoku')}, cases {' '.join(cases)}, "
          f"against {url}\n  server: {' '.join(command)}", flush=True)

    with open(report_dir / "server.log", "w") as log:
        server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        results = None
        seconds = 0.0
        try:
            if not wait_for_status(server, port):
                how = (f"exited with status {server.returncode}" if server.poll() is not None
                       else f"did not answer /status within {STARTUP_TIMEOUT:.0f} s")
                print(f"FAILED: the server {how}; see {report_dir / 'server.log'}")
                return 1
            started = time.monotonic()
            try:
                results = asyncio.run(asyncio.wait_for(run_cases(kosoku, url, cases, excluded, concurrency),
                                                       options.timeout))
            except TimeoutError:
                print(f"FAILED: the cases took longer than {options.timeout:.0f} s")
                return 1
            seconds = time.monotonic() - started
        finally:
            crashed = server.poll() is not None
            status = stop(server)

    write_reports(results, str(report_dir))
    lines = summarize(options.name, results, seconds)
    (report_dir / "summary.txt").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"  reports: {report_dir}")

    rejected = [r.case_id for r in results if not accepted(r)]
    problems = []
    if not results:
        problems.append("no case ran")
    if rejected:
        problems.append(f"not accepted: {' '.join(rejected)}")
    if crashed:
        problems.append(f"the server exited during the run (status {status})")
    elif status != 0:
        problems.append(f"the server did not shut down cleanly on SIGTERM (status {status})")
    if problems:
        print(f"FAILED: {'; '.join(problems)}")
        return 1
    print("passed: every case OK or INFORMATIONAL")
    return 0


if __name__ == "__main__":
    status = main(sys.argv[1:])
    # Leave without finalizing the interpreter: kosoku's runtime threads may still be calling into
    # Python (waking the finished event loop), and Python 3.11 ends a thread that wants the GIL
    # during finalization by unwinding it through Rust frames, which aborts the process (status
    # 134) after a good run, one time in a few.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)
