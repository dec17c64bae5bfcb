#!/usr/bin/env python3
"""End-to-end test of the `stateroom` command as a user runs it: new, build, serve and dev.

Usage: cli_test.py PATH/TO/stateroom

In a fresh temporary directory (removed at the end): `stateroom new counter`, `stateroom build`,
`stateroom serve dist`, `stateroom dev` (from a subdirectory of the project, with a hot swap of the
service, a failed build and its fix), the errors for bad inputs and bad stateroom.toml files, a
port already in use, and the [server] table with command-line flags overriding it. Every server
runs on 127.0.0.1 on a free port and is stopped with SIGTERM (or SIGINT) and checked to exit 0;
leftovers are killed (their whole process group) on any failure. Every wait is bounded.

Prints `ok: NAME` or `FAIL: NAME: WHY` for each check and exits 1 if any failed.
"""
import asyncio
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

import websockets

RECV_TIMEOUT = 10      # one WebSocket message
COMMAND_TIMEOUT = 180  # a command that should end by itself (`build` included)
START_TIMEOUT = 120    # `dev`: its first build until "listening on"; `serve`: until "listening on"
REBUILD_TIMEOUT = 120  # `dev`: a change until "service replaced" (or the failed build's report)
LOG_TIMEOUT = 15       # any other log line
EXIT_TIMEOUT = 20      # SIGTERM until the process exits
TEST_TIMEOUT = 420     # one named test, whatever it does

NAME = "counter"
PROJECT_FILES = ["stateroom.toml", "CMakeLists.txt", "service.cpp", "static/index.html", "README.md", ".gitignore"]


class Failure(Exception):
    pass


def check(condition, why):
    if not condition:
        raise Failure(why)


def tail(text, lines=30):
    return "\n".join(text.splitlines()[-lines:])


# --- processes ------------------------------------------------------------------------------------

class Command:
    """One finished command: its exit code and output."""

    def __init__(self, args, cwd, timeout=COMMAND_TIMEOUT):
        self.args = args
        try:
            r = subprocess.run(args, cwd=cwd, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                               timeout=timeout, start_new_session=True)
        except subprocess.TimeoutExpired as e:
            raise Failure(f"{' '.join(args)} did not end within {timeout} s") from e
        self.code, self.stdout, self.stderr = r.returncode, r.stdout, r.stderr

    def describe(self):
        return f"`{' '.join(self.args[1:])}` exited with {self.code}; stdout:\n{self.stdout}stderr:\n{self.stderr}"

    def expect_ok(self):
        check(self.code == 0, self.describe())
        return self

    def expect_one_error_line(self, *fragments):
        """Exit code 1 and exactly one line of output, on stderr, `error: ...` holding every fragment."""
        check(self.code == 1, "exit code is not 1: " + self.describe())
        check(self.stdout == "", "something on stdout: " + self.describe())
        lines = self.stderr.splitlines()
        check(len(lines) == 1, f"not exactly one line on stderr: {self.describe()}")
        check(lines[0].startswith("error: "), f"the line does not start with 'error: ': {lines[0]!r}")
        for f in fragments:
            check(f in lines[0], f"{f!r} is not in {lines[0]!r}")
        return lines[0]


RUNNING = []  # every Server started, so that leftovers can be killed


class Server:
    """A long-running `stateroom serve` or `stateroom dev`; its output (stdout and stderr) is collected."""

    def __init__(self, args, cwd):
        self.args = args
        self.lines = []
        self.cond = threading.Condition()
        self.proc = subprocess.Popen(args, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True, start_new_session=True)
        RUNNING.append(self)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for line in self.proc.stdout:
            with self.cond:
                self.lines.append(line.rstrip("\n"))
                self.cond.notify_all()
        with self.cond:
            self.lines.append(None)  # end of output
            self.cond.notify_all()

    def log(self, start=0):
        with self.cond:
            return "\n".join(line for line in self.lines[start:] if line is not None)

    def mark(self):
        """The position in the log; a later wait can start there."""
        with self.cond:
            return len(self.lines)

    def find(self, pattern, start=0):
        with self.cond:
            for i in range(start, len(self.lines)):
                if self.lines[i] is not None:
                    m = re.search(pattern, self.lines[i])
                    if m:
                        return i, m
        return None

    async def wait_log(self, pattern, timeout, start=0):
        """Waits for a line matching `pattern` at or after `start`; returns (index, match)."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.find(pattern, start)
            if found:
                return found
            with self.cond:
                ended = self.lines and self.lines[-1] is None
            if ended:
                self.proc.wait(timeout=EXIT_TIMEOUT)
                raise Failure(f"the server exited ({self.proc.returncode}) before logging /{pattern}/; "
                              f"its log:\n{tail(self.log(start))}")
            if time.monotonic() > deadline:
                raise Failure(f"no log line /{pattern}/ within {timeout} s; the log since:\n{tail(self.log(start))}")
            await asyncio.sleep(0.05)

    async def port(self):
        _, m = await self.wait_log(r"listening on (\S+):(\d+)", START_TIMEOUT)
        return int(m.group(2))

    def stop(self, sig=signal.SIGTERM):
        """Sends `sig` and waits; the exit code (None if it had to be killed)."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            code = self.proc.wait(timeout=EXIT_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.kill()
            return None
        self.reader.join(timeout=5)
        self.kill()  # anything it started that outlived it
        return code

    def expect_clean_stop(self, sig=signal.SIGTERM):
        code = self.stop(sig)
        check(code == 0, f"after {sig.name}, {' '.join(self.args[1:])} exited with {code} instead of 0; its log:\n"
                         f"{tail(self.log())}")

    def kill(self):
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass


def kill_leftovers():
    for s in RUNNING:
        s.kill()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- clients -------------------------------------------------------------------------------------

def connect(port, path):
    return websockets.connect(f"ws://127.0.0.1:{port}{path}", open_timeout=RECV_TIMEOUT, close_timeout=5)


async def recv(ws, what=""):
    try:
        return await asyncio.wait_for(ws.recv(), RECV_TIMEOUT)
    except asyncio.TimeoutError:
        raise Failure(f"no message within {RECV_TIMEOUT} s{' ' + what if what else ''}") from None


async def expect(ws, text, what):
    got = await recv(ws, what)
    check(got == text, f"{what}: got {got!r}, expected {text!r}")


def http_get(port, path):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=RECV_TIMEOUT) as r:
            return r.status, r.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as e:
        return e.code, ""


def check_page(port):
    status, body = http_get(port, "/")
    check(status == 200, f"GET / answered {status}")
    check(f"<h1>{NAME}</h1>" in body, f"GET / is not the project's page (no <h1>{NAME}</h1>): {body[:200]!r}")
    status, body = http_get(port, "/status")
    check(status == 200 and body == "ok", f"GET /status answered {status} {body!r}")


async def check_counter(port, prefix="new value: "):
    """Two clients of the default room (/ws) and of /ws/<room> follow one counter; another room is separate."""
    async with connect(port, "/ws") as a, connect(port, "/ws") as b:
        await a.send("hello")  # not a command: ignored
        await a.send("increment")
        await expect(a, f"{prefix}1", "/ws, client a after increment")
        await expect(b, f"{prefix}1", "/ws, client b after a's increment")
        await b.send("decrement")
        await expect(a, f"{prefix}0", "/ws, client a after b's decrement")
        await expect(b, f"{prefix}0", "/ws, client b after decrement")
    async with connect(port, "/ws/blue") as a, connect(port, "/ws/blue") as b, connect(port, "/ws/green") as c:
        await a.send("increment")
        await expect(a, f"{prefix}1", "/ws/blue, client a")
        await expect(b, f"{prefix}1", "/ws/blue, client b")
        await b.send("increment")
        await expect(a, f"{prefix}2", "/ws/blue, client a after the second increment")
        await expect(b, f"{prefix}2", "/ws/blue, client b after the second increment")
        await c.send("increment")
        await expect(c, f"{prefix}1", "/ws/green (another room: its own counter)")


# --- the tests -------------------------------------------------------------------------------------

class Context:
    def __init__(self, bin_path, tmp):
        self.bin = bin_path
        self.tmp = tmp
        self.project = os.path.join(tmp, NAME)
        self.dev = None       # the `stateroom dev` of the hot-swap tests
        self.dev_port = None

    def run(self, *args, cwd=None, timeout=COMMAND_TIMEOUT):
        return Command([self.bin, *args], cwd or self.project, timeout)

    def server(self, *args, cwd=None):
        return Server([self.bin, *args], cwd or self.project)

    def need_project(self):
        check(os.path.isfile(os.path.join(self.project, "stateroom.toml")), "no project (`new` failed)")

    def path(self, *parts):
        return os.path.join(self.project, *parts)

    def read(self, *parts):
        with open(self.path(*parts), encoding="utf-8") as f:
            return f.read()

    def write(self, text, *parts):
        with open(self.path(*parts), "w", encoding="utf-8") as f:
            f.write(text)


# 1. new

async def test_new_creates_the_project(ctx):
    r = ctx.run("new", NAME, cwd=ctx.tmp).expect_ok()
    check("created" in r.stdout, f"no 'created' message: {r.stdout!r}")
    for f in PROJECT_FILES:
        check(os.path.isfile(ctx.path(f)), f"{NAME}/{f} was not created")
    check(f'target = "{NAME}"' in ctx.read("stateroom.toml"), "stateroom.toml does not name the target")
    check('static_files = "static"' in ctx.read("stateroom.toml"), "stateroom.toml does not name static/")
    check(f"stateroom_add_wasm_service({NAME} service.cpp)" in ctx.read("CMakeLists.txt"),
          "CMakeLists.txt does not build service.cpp")
    check('"new value: "' in ctx.read("service.cpp"), "service.cpp is not the counter")
    check(f"<h1>{NAME}</h1>" in ctx.read("static", "index.html"), "index.html does not name the project")
    check("{{" not in "".join(ctx.read(f) for f in PROJECT_FILES), "a template placeholder was left")


async def test_new_refuses_an_existing_directory(ctx):
    ctx.need_project()
    before = ctx.read("service.cpp")
    ctx.run("new", NAME, cwd=ctx.tmp).expect_one_error_line("already exists", NAME)
    check(ctx.read("service.cpp") == before, "service.cpp was overwritten")


async def test_new_refuses_bad_names(ctx):
    for name in ["bad name!", "../outside", "a/b", ".hidden"]:
        ctx.run("new", name, cwd=ctx.tmp).expect_one_error_line("not a project name")
    leftovers = sorted(set(os.listdir(ctx.tmp)) - {NAME})
    check(not leftovers, f"a refused name left files: {leftovers}")
    check(not os.path.exists(os.path.join(os.path.dirname(ctx.tmp), "outside")), "../outside was created")


# 2. build and serve

async def test_build_writes_dist(ctx):
    ctx.need_project()
    r = ctx.run("build").expect_ok()
    wasm = ctx.path("dist", "server.wasm")
    check(os.path.isfile(wasm), f"no dist/server.wasm; output:\n{r.stdout}{r.stderr}")
    with open(wasm, "rb") as f:
        check(f.read(4) == b"\0asm", "dist/server.wasm is not a WebAssembly binary")
    check(ctx.read("dist", "static", "index.html") == ctx.read("static", "index.html"),
          "dist/static/index.html is not static/index.html")
    check("built counter.wasm" in r.stdout and "stateroom serve dist" in r.stdout,
          f"the output does not say what was built and how to serve it:\n{r.stdout}")


async def test_build_out_from_a_subdirectory(ctx):
    ctx.need_project()
    out = os.path.join(ctx.tmp, "package")
    ctx.run("build", "-o", out, cwd=ctx.path("static")).expect_ok()
    check(os.path.isfile(os.path.join(out, "server.wasm")), "build -o DIR wrote no DIR/server.wasm")
    check(os.path.isfile(os.path.join(out, "static", "index.html")), "build -o DIR wrote no DIR/static/index.html")
    shutil.rmtree(out)


async def test_serve_dist(ctx):
    ctx.need_project()
    server = ctx.server("serve", "dist", "--port", "0", "--host", "127.0.0.1")
    try:
        port = await server.port()
        check_page(port)
        await check_counter(port)
    finally:
        server.expect_clean_stop()


# 3. dev: from a subdirectory, then the hot swap, a failed build and its fix

async def test_dev_from_a_subdirectory(ctx):
    ctx.need_project()
    ctx.dev = ctx.server("dev", "0", "--host", "127.0.0.1", cwd=ctx.path("static"))
    ctx.dev_port = await ctx.dev.port()
    check(ctx.dev.find(rf"project {NAME} \({re.escape(ctx.project)}\)"), "the log does not name the project")
    await ctx.dev.wait_log(r"watching .* for changes", LOG_TIMEOUT)
    check_page(ctx.dev_port)
    await check_counter(ctx.dev_port)


def need_dev(ctx):
    check(ctx.dev is not None and ctx.dev.proc.poll() is None, "`stateroom dev` is not running")


async def wait_rebuild(dev, start, what):
    """Waits for the change to be seen and the new build to be swapped in; the `service replaced` line."""
    await dev.wait_log(r"changed: .*service\.cpp", LOG_TIMEOUT, start)
    await dev.wait_log(rf"building {NAME} \.\.\.", LOG_TIMEOUT, start)
    found = dev.find(r"the build of .* failed", start)
    check(not found, f"{what}: the build failed:\n{tail(dev.log(start))}")
    i, _ = await dev.wait_log(r"service replaced", REBUILD_TIMEOUT, start)
    check(dev.find(rf"built {NAME}\.wasm in [0-9.]+ s", start), f"{what}: no 'built {NAME}.wasm in N s' line")
    check(not dev.find(r"the build of .* failed", start), f"{what}: the build failed:\n{tail(dev.log(start))}")
    return dev.lines[i]


async def rebuild_with(ctx, dev, what, old, new):
    """Replaces `old` by `new` in service.cpp and waits for the build to be swapped in; the log since."""
    start = dev.mark()
    source = ctx.read("service.cpp")
    check(old in source, f"service.cpp has no {old!r}")
    ctx.write(source.replace(old, new), "service.cpp")
    await wait_rebuild(dev, start, what)
    return start


async def test_dev_hot_swap(ctx):
    need_dev(ctx)
    dev, port = ctx.dev, ctx.dev_port
    async with connect(port, "/ws/old") as a:
        await a.send("increment")
        await expect(a, "new value: 1", "room old, client A, before the changes")

        # Code only: the room moves to the new build with its count, its client still connected.
        start = await rebuild_with(ctx, dev, "after a change of code", "++value;", "value += 2;")
        await dev.wait_log(r"room 'old' moved to the new service with its state \(1 client", LOG_TIMEOUT, start)
        await a.send("increment")
        await expect(a, "new value: 3", "room old after a change of code (its count carried over, +2 now)")

        # A field more in the service: another data layout, the room starts afresh in place.
        start = await rebuild_with(ctx, dev, "after a field was added", "  int value = 0;\n",
                                   "  int value = 0;\n  int spare = 0;\n")
        await dev.wait_log(r"room 'old' starts afresh on the new service: the new build has another data layout",
                           LOG_TIMEOUT, start)
        await a.send("increment")
        await expect(a, "new value: 2", "room old after a field was added (a fresh count, +2)")

        # Another string constant: another layout again.
        await rebuild_with(ctx, dev, "back to ++value", "value += 2;", "++value;")
        start = await rebuild_with(ctx, dev, "after the text changed", '"new value: "', '"value is "')
        await dev.wait_log(r"room 'old' starts afresh on the new service", LOG_TIMEOUT, start)
        await a.send("increment")
        await expect(a, "value is 1", "room old after the text changed")
        async with connect(port, "/ws/old") as b:
            await b.send("increment")
            await expect(a, "value is 2", "room old, client A, after B's increment")
            await expect(b, "value is 2", "room old, client B joining after the change")
        async with connect(port, "/ws/fresh") as c:
            await c.send("increment")
            await expect(c, "value is 1", "a new room after the change")


async def test_dev_failed_build_keeps_serving(ctx):
    need_dev(ctx)
    dev, port = ctx.dev, ctx.dev_port
    async with connect(port, "/ws/survivor") as a:
        await a.send("increment")
        await expect(a, "value is 1", "room survivor before the broken build")
        start = dev.mark()
        source = ctx.read("service.cpp")
        check("++value;" in source, "service.cpp has no '++value;'")
        ctx.write(source.replace("++value;", "++value; int broken = ;"), "service.cpp")
        await dev.wait_log(r"changed: .*service\.cpp", LOG_TIMEOUT, start)
        await dev.wait_log(rf"the build of {NAME} failed", REBUILD_TIMEOUT, start)
        await dev.wait_log(r"still serving the last good build", LOG_TIMEOUT, start)
        log = dev.log(start)
        check(re.search(r"service\.cpp:\d+:\d+: error:", log), f"no compiler error naming service.cpp:\n{tail(log)}")
        check("expected expression" in log or "int broken" in log,
              f"the compiler's error does not show the broken code:\n{tail(log)}")
        check(not dev.find("service replaced", start), "a failed build replaced the service")
        await a.send("increment")
        await expect(a, "value is 2", "room survivor after the failed build")
        async with connect(port, "/ws/after-failure") as b:
            await b.send("increment")
            await expect(b, "value is 1", "a new room after the failed build (the last good build)")
    check(dev.proc.poll() is None, "`stateroom dev` exited after the failed build")


async def test_dev_rebuilds_after_the_fix(ctx):
    need_dev(ctx)
    dev, port = ctx.dev, ctx.dev_port
    start = dev.mark()
    source = ctx.read("service.cpp")
    check(" int broken = ;" in source, "service.cpp is not the broken one")
    ctx.write(source.replace(" int broken = ;", "").replace('"value is "', '"count: "'), "service.cpp")
    await wait_rebuild(dev, start, "after the fix")
    async with connect(port, "/ws/fixed") as a:
        await a.send("increment")
        await expect(a, "count: 1", "a new room after the fix")


async def test_dev_keeps_the_last_good_build_when_the_new_one_cannot_start_a_room(ctx):
    need_dev(ctx)
    dev, port = ctx.dev, ctx.dev_port
    async with connect(port, "/ws/keeper") as a:
        await a.send("increment")
        await expect(a, "count: 1", "room keeper before the build that traps")
        start = dev.mark()
        good = ctx.read("service.cpp")
        check("  int value = 0;\n" in good, "service.cpp has no '  int value = 0;'")
        # A field more (another data layout: the room would start afresh in it) and an init that
        # traps: taking this build would lose the count and fail every room.
        ctx.write(good.replace("  int value = 0;\n", "  int value = 0;\n  int extra = 0;\n"
                               "  void init(Context&) override { __builtin_trap(); }\n"), "service.cpp")
        await dev.wait_log(rf"built {NAME}\.wasm in", REBUILD_TIMEOUT, start)
        await dev.wait_log(rf"the new build of {NAME} cannot start a room: .*unreachable", LOG_TIMEOUT, start)
        await dev.wait_log(r"still serving the last good build", LOG_TIMEOUT, start)
        check(not dev.find("service replaced", start), "a build that cannot start a room replaced the service")
        await a.send("increment")
        await expect(a, "count: 2", "room keeper after the build that traps (the same socket, its count)")
        async with connect(port, "/ws/keeper-new") as b:
            await b.send("increment")
            await expect(b, "count: 1", "a new room after the build that traps (the last good build)")
        start = dev.mark()
        ctx.write(good, "service.cpp")
        await wait_rebuild(dev, start, "back to the good source")
        await a.send("increment")
        await expect(a, "count: 3", "room keeper after the good source came back")


async def test_dev_stops_on_sigterm(ctx):
    need_dev(ctx)
    dev = ctx.dev
    try:
        async with connect(ctx.dev_port, "/ws/bye") as a:
            await a.send("increment")
            await expect(a, "count: 1", "room bye")
            dev.proc.send_signal(signal.SIGTERM)
            try:
                await recv(a, "after SIGTERM")
                raise Failure("a message instead of a close after SIGTERM")
            except websockets.exceptions.ConnectionClosed as e:
                check(e.rcvd is not None and e.rcvd.code == 1001, f"closed with {e!r}, expected 1001 (going away)")
    finally:
        ctx.dev = None
        try:
            dev.expect_clean_stop()  # SIGTERM if it was not sent yet: it must exit 0 either way
        finally:
            # Put the original service back for what follows.
            ctx.write(re.sub(r'"(count: |value is )"', '"new value: "', ctx.read("service.cpp"))
                      .replace(" int broken = ;", "").replace("  int spare = 0;\n", ""), "service.cpp")


# 4. bad inputs

async def test_serve_missing_file(ctx):
    ctx.run("serve", "missing.wasm", "--port", "0", cwd=ctx.tmp).expect_one_error_line("missing.wasm", "no such file")


async def test_serve_limits_that_cannot_hold(ctx):
    # A message must fit in a room's guest memory, which a 32-bit module caps at 4 GiB.
    ctx.run("serve", "missing.wasm", "--port", "0", "--max-message-size", "100MiB", cwd=ctx.tmp) \
        .expect_one_error_line("--max-message-size (104857600 bytes)", "--memory-limit")
    ctx.run("serve", "missing.wasm", "--port", "0", "--memory-limit", "8GiB", "--max-message-size", "3GiB",
            cwd=ctx.tmp).expect_one_error_line("--max-message-size", "2 GiB")
    ctx.run("serve", "missing.wasm", "--port", "0", "--memory-limit", "8GiB", cwd=ctx.tmp) \
        .expect_one_error_line("memory limit", "at most 4 GiB")


async def test_serve_not_a_module(ctx):
    ctx.need_project()
    ctx.run("serve", "service.cpp", "--port", "0").expect_one_error_line("service.cpp", "not a WebAssembly module")


async def test_serve_directory_without_server_wasm(ctx):
    ctx.need_project()
    ctx.run("serve", "static", "--port", "0").expect_one_error_line("static", "no server.wasm")


async def test_build_and_dev_outside_a_project(ctx):
    outside = os.path.join(ctx.tmp, "outside-project")
    os.makedirs(outside, exist_ok=True)
    for cmd in (["build"], ["dev", "0"]):
        ctx.run(*cmd, cwd=outside, timeout=30).expect_one_error_line("no stateroom.toml", outside)


# (stateroom.toml text, the line the error names, what the message names)
BAD_CONFIGS = [
    ("unknown key", 'static_files = "static"\n[service]\ntarget = "counter"\n[server]\nportt = 1\n', 5,
     ["unknown key 'server.portt'"]),
    ("bad port", '[service]\ntarget = "counter"\n\n[server]\nhost = "127.0.0.1"\nport = "eighty"\n', 6,
     ["server.port", "integer"]),
    ("bad size", '[service]\ntarget = "counter"\n[server]\nmax_queued = "lots"\n', 4,
     ["server.max_queued", "'lots' is not a size"]),
    ("bad duration", '[service]\ntarget = "counter"\n[server]\nping_interval = "soon"\n', 4,
     ["server.ping_interval", "'soon' is not a duration"]),
    ("unknown top-level key", 'statik_files = "static"\n[service]\ntarget = "counter"\n', 1,
     ["unknown key 'statik_files'"]),
    ("unknown [service] key", '[service]\ntarget = "counter"\nsource = "x.cpp"\n', 3, ["service.source"]),
    ("missing static directory", 'static_files = "nowhere"\n[service]\ntarget = "counter"\n', 1,
     ["static_files", "nowhere", "not a directory"]),
    ("toml syntax", '[service]\ntarget = "counter"\n[server\nport = 1\n', 3, []),
]


async def test_bad_stateroom_toml(ctx):
    problems = []
    for i, (what, text, line, fragments) in enumerate(BAD_CONFIGS):
        d = os.path.join(ctx.tmp, f"bad-config-{i}")
        os.makedirs(os.path.join(d, "static"), exist_ok=True)
        shutil.copy(ctx.path("CMakeLists.txt"), d)
        shutil.copy(ctx.path("service.cpp"), d)
        toml = os.path.join(d, "stateroom.toml")
        with open(toml, "w", encoding="utf-8") as f:
            f.write(text)
        for cmd in (["dev", "0"], ["build"]):
            try:
                Command([ctx.bin, *cmd], d, timeout=30).expect_one_error_line(f"error: {toml}:{line}: ", *fragments)
            except Failure as e:
                problems.append(f"{what} ({' '.join(cmd)}): {e}")
        shutil.rmtree(d)
    # No [service]: the file and the table it lacks (there is no line to name).
    d = os.path.join(ctx.tmp, "no-service")
    os.makedirs(d)
    toml = os.path.join(d, "stateroom.toml")
    with open(toml, "w", encoding="utf-8") as f:
        f.write("[server]\nport = 8080\n")
    for cmd in (["dev", "0"], ["build"]):
        try:
            Command([ctx.bin, *cmd], d, timeout=30).expect_one_error_line(toml, "no [service] table")
        except Failure as e:
            problems.append(f"missing [service] ({' '.join(cmd)}): {e}")
    shutil.rmtree(d)
    check(not problems, "\n".join(problems))


async def test_port_in_use(ctx):
    ctx.need_project()
    first = ctx.server("serve", "dist", "--port", "0", "--host", "127.0.0.1")
    try:
        port = await first.port()
        for cmd in (["serve", "dist", "--port", str(port), "--host", "127.0.0.1"],
                    ["dev", str(port), "--host", "127.0.0.1"]):
            r = ctx.run(*cmd, timeout=START_TIMEOUT)
            out = r.stdout + r.stderr
            check(r.code == 1, f"a second server on a port in use: {r.describe()}")
            lines = [line for line in out.splitlines() if "cannot listen on" in line]
            check(len(lines) == 1, f"`{' '.join(cmd)}`: not one 'cannot listen on' line:\n{out}")
            check(f"127.0.0.1:{port}" in lines[0] and "Address already in use" in lines[0],
                  f"`{' '.join(cmd)}`: the line does not say where and why: {lines[0]!r}")
            for bad in ("terminate called", "Aborted", "what():", "Traceback", "core dumped"):
                check(bad not in out, f"`{' '.join(cmd)}`: {bad!r} in the output:\n{out}")
            if cmd[0] == "serve":
                check(len(out.splitlines()) == 1, f"`serve` on a port in use printed more than one line:\n{out}")
        # The first server is unharmed.
        async with connect(port, "/ws/still-here") as a:
            await a.send("increment")
            await expect(a, "new value: 1", "the first server after the others failed")
    finally:
        first.expect_clean_stop()


# 5. the [server] table and flags over it

async def test_server_table_and_flags(ctx):
    ctx.need_project()
    original = ctx.read("stateroom.toml")
    p = free_port()
    text = re.sub(r"(?m)^port = 8080$", f'port = {p}\nhost = "127.0.0.1"\ndefault_room = "lobby"', original)
    check(text != original, "the template's stateroom.toml has no `port = 8080` line")
    ctx.write(text, "stateroom.toml")
    first = second = None
    try:
        first = ctx.server("dev")
        port = await first.port()
        check(port == p, f"`dev` with port = {p} in stateroom.toml listens on {port}")
        check(first.find(rf"listening on 127\.0\.0\.1:{p}\b"), "`dev` does not listen on the host of stateroom.toml")
        async with connect(p, "/ws") as a, connect(p, "/ws/lobby") as b:
            await a.send("increment")
            await expect(a, "new value: 1", "/ws with default_room = lobby")
            await expect(b, "new value: 1", "/ws/lobby shares the default room's counter")

        # While the first runs: `dev 0` and a flag override stateroom.toml.
        second = ctx.server("dev", "0", "--default-room", "hall")
        port2 = await second.port()
        check(port2 not in (0, p), f"`dev 0` with port = {p} in stateroom.toml listens on {port2}")
        async with connect(port2, "/ws") as a, connect(port2, "/ws/hall") as b, connect(port2, "/ws/lobby") as c:
            await a.send("increment")
            await expect(a, "new value: 1", "/ws with --default-room hall")
            await expect(b, "new value: 1", "/ws/hall shares the default room's counter")
            await c.send("increment")
            await expect(c, "new value: 1", "/ws/lobby is another room under --default-room hall")
        second.expect_clean_stop(signal.SIGINT)
        second = None

        # --port beats stateroom.toml too (the first still holds p).
        q = free_port()
        third = ctx.server("dev", "--port", str(q))
        try:
            port3 = await third.port()
            check(port3 == q, f"`dev --port {q}` listens on {port3}")
        finally:
            third.expect_clean_stop()
    finally:
        for s in (second, first):
            if s is not None:
                s.expect_clean_stop()
        ctx.write(original, "stateroom.toml")


TESTS = [
    ("new creates the project", test_new_creates_the_project),
    ("new refuses an existing directory", test_new_refuses_an_existing_directory),
    ("new refuses bad names", test_new_refuses_bad_names),
    ("build writes dist", test_build_writes_dist),
    ("build -o DIR from a subdirectory", test_build_out_from_a_subdirectory),
    ("serve dist: the page and the counter", test_serve_dist),
    ("dev from a subdirectory: the page and the counter", test_dev_from_a_subdirectory),
    ("dev hot swap: running rooms move to each build, with their state when only code changed", test_dev_hot_swap),
    ("dev failed build: the compiler's errors, the last good build serves", test_dev_failed_build_keeps_serving),
    ("dev rebuilds after the fix", test_dev_rebuilds_after_the_fix),
    ("dev keeps the last good build when the new one cannot start a room",
     test_dev_keeps_the_last_good_build_when_the_new_one_cannot_start_a_room),
    ("dev stops on SIGTERM with exit code 0", test_dev_stops_on_sigterm),
    ("serve a missing file", test_serve_missing_file),
    ("serve a file that is not a module", test_serve_not_a_module),
    ("serve with limits that cannot hold a message", test_serve_limits_that_cannot_hold),
    ("serve a directory without server.wasm", test_serve_directory_without_server_wasm),
    ("build and dev outside a project", test_build_and_dev_outside_a_project),
    ("bad stateroom.toml files", test_bad_stateroom_toml),
    ("port in use", test_port_in_use),
    ("[server] table applied, flags override it", test_server_table_and_flags),
]


def main():
    if len(sys.argv) != 2:
        print("usage: cli_test.py PATH/TO/stateroom", file=sys.stderr)
        return 2
    bin_path = os.path.abspath(sys.argv[1])

    def interrupted(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, interrupted)
    tmp = os.path.realpath(tempfile.mkdtemp(prefix="stateroom-cli-test-"))
    ctx = Context(bin_path, tmp)
    passed = failed = 0
    began = time.monotonic()
    try:
        for name, fn in TESTS:
            t0 = time.monotonic()
            try:
                asyncio.run(asyncio.wait_for(fn(ctx), TEST_TIMEOUT))
                passed += 1
                print(f"ok: {name} ({time.monotonic() - t0:.1f} s)", flush=True)
            except Exception as e:  # noqa: BLE001 - report every failure and go on
                failed += 1
                why = str(e) if isinstance(e, Failure) else repr(e)
                if isinstance(e, asyncio.TimeoutError):
                    why = f"did not finish within {TEST_TIMEOUT} s"
                print(f"FAIL: {name}: {why}", flush=True)
                kill_leftovers_of_failed_test(ctx)
    except KeyboardInterrupt as e:
        failed += 1
        print(f"FAIL: interrupted ({e})", flush=True)
    finally:
        if ctx.dev is not None and ctx.dev.proc.poll() is None:
            code = ctx.dev.stop()
            if code != 0:
                failed += 1
                print(f"FAIL: `stateroom dev` exited with {code} after SIGTERM at the end", flush=True)
        kill_leftovers()
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"{passed} passed, {failed} failed in {time.monotonic() - began:.1f} s")
    return 1 if failed else 0


def kill_leftovers_of_failed_test(ctx):
    """After a failure: every server but the running `dev` of the hot-swap tests is killed."""
    for s in RUNNING:
        if s is not ctx.dev and s.proc.poll() is None:
            s.kill()


if __name__ == "__main__":
    sys.exit(main())
