"""What the end-to-end tests share: an assertion that holds under `python -O`, a server started on a
free port with its output kept (with a state directory, and stopped by a signal), and runs of named
checks that report every failure."""
import asyncio
import contextlib
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading


def check(condition, message):
    """An assertion that also holds under `python -O`, with what went wrong."""
    if not condition:
        raise AssertionError(message)


class Server:
    """`command` started with --port 0 --host `host` (127.0.0.1 by default), after `prefix` (such as
    `ip netns exec NAME`, which execs the server: `proc` is the server itself); `port` is None when it
    did not start."""

    def __init__(self, command, env=None, host="127.0.0.1", prefix=()):
        self.proc = subprocess.Popen([*prefix, *command, "--port", "0", "--host", host], stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True, env=env)
        self.port = None
        self.startup = []  # what the server printed up to its "listening on" line
        for line in self.proc.stdout:
            self.startup.append(line)
            m = re.search(r"listening on \S+:(\d+)", line)
            if m:
                self.port = int(m.group(1))
                break
        # Keep reading what the server prints, so that a chatty server never blocks on a full pipe.
        self.output = []
        self.reader = threading.Thread(target=lambda: self.output.extend(self.proc.stdout), daemon=True)
        self.reader.start()


def run(server, tests):
    """Runs each (name, coroutine) of `tests` in turn, then kills the server if it still runs; the
    exit code (1 when anything failed)."""
    if server.port is None:
        for _, coro in tests:
            coro.close()
        print("the server did not start:\n" + "".join(server.startup[-50:]))
        return 1
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
        if server.proc.poll() is None:
            server.proc.kill()
            server.proc.wait()
    if failed:
        print("server output:\n" + "".join(server.output[-50:]))
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


def start_with_state(command, state, *extra):
    """`command` serving with --state-dir `state` (and `extra`); the server and its ws:// base URL."""
    server = Server(command + ["--state-dir", state, *extra])
    check(server.port is not None, "the server did not start:\n" + "".join(server.startup[-30:]))
    return server, f"ws://127.0.0.1:{server.port}"


def stop(server, sig=signal.SIGTERM):
    """Sends `sig` and waits for the server to exit (with 0, after SIGTERM); everything it printed."""
    server.proc.send_signal(sig)
    code = server.proc.wait(timeout=20)
    server.reader.join(timeout=5)  # what it printed last
    if sig == signal.SIGTERM:
        check(code == 0, f"the server exited with {code} on SIGTERM:\n" + "".join(server.output[-30:]))
    return "".join(server.startup + server.output)


class Cases:
    """Named synchronous checks, run in turn, each failure reported and the rest run all the same."""

    def __init__(self):
        self.passed = self.failed = 0

    def __call__(self, name, body):
        try:
            body()
            self.passed += 1
            print(f"ok: {name}")
        except Exception as e:  # noqa: BLE001 - report every failure and go on
            self.failed += 1
            print(f"FAILED: {name}: {e!r}")

    def exit_code(self):
        """Prints the tally; 1 when anything failed."""
        print(f"{self.passed} passed, {self.failed} failed")
        return 1 if self.failed else 0


SKIPPED = 77  # the exit code ctest reports as skipped (SKIP_RETURN_CODE)


def in_mount_namespace(script, argv, inside):
    """Runs `inside(argv)` in a mount namespace of its own: `script` re-runs itself with `--inside`
    under `unshare -m` (root or CAP_SYS_ADMIN); SKIPPED without one."""
    if argv[:1] == ["--inside"]:
        return inside(argv[1:])
    probe = subprocess.run(["unshare", "-m", "true"], capture_output=True, text=True)
    if probe.returncode != 0:
        print(f"skipped: no mount namespace (unshare -m: {probe.stderr.strip()})")
        return SKIPPED
    return subprocess.run(["unshare", "-m", "--propagation", "private", sys.executable, os.path.abspath(script),
                           "--inside", *argv]).returncode


@contextlib.contextmanager
def read_only_and_full_tmpfs(prefix):
    """Two small tmpfs (inside a mount namespace): one remounted read-only, one filled up; their paths."""
    with tempfile.TemporaryDirectory(prefix=prefix) as top:
        read_only, full = os.path.join(top, "ro"), os.path.join(top, "full")
        mounted = []
        try:
            for d in (read_only, full):
                os.mkdir(d)
                subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", d], check=True)
                mounted.append(d)
            subprocess.run(["mount", "-o", "remount,ro", read_only], check=True)
            fd = os.open(os.path.join(full, "filler"), os.O_WRONLY | os.O_CREAT, 0o644)
            try:  # no block left for a snapshot
                while os.write(fd, b"\0" * 4096) > 0:
                    pass
            except OSError:
                pass
            finally:
                os.close(fd)
            yield read_only, full
        finally:
            for d in mounted:
                subprocess.run(["umount", d], check=False)
