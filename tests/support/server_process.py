"""A server binary run as a child process, as a user would, for Python drivers (the no-loss test,
scripts/soak): the port it listens on, what it logs, its memory and descriptors.

ServerProcess(command) starts `command --port 0 --host 127.0.0.1`, waits for its
"listening on HOST:PORT" line and keeps reading what it prints (so a chatty server never blocks on a
full pipe): the lines at warning level or above, the last lines, and how many lines matched each of
the patterns it was given to count. It keeps nothing else, so an hour of debug logging costs no
memory here.
"""
import collections
import os
import re
import signal
import subprocess
import threading

# spdlog's default pattern: "[2026-01-01 12:00:00.000] [warning] text".
LEVEL = re.compile(r"^\[[^\]]*\] \[(\w+)\] ")
PROBLEM_LEVELS = {"warning", "error", "critical"}


class ServerProcess:
    def __init__(self, command, count=None, tail=200, start_timeout=30):
        """`count`: {name: regex}, the lines to count (see counts())."""
        self.command = list(command) + ["--port", "0", "--host", "127.0.0.1"]
        self.proc = subprocess.Popen(self.command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True, errors="replace")
        self.pid = self.proc.pid
        self.port = None
        self._patterns = {name: re.compile(p) for name, p in (count or {}).items()}
        self._counts = collections.Counter()
        self._problems = []  # lines at warning level or above
        self._tail = collections.deque(maxlen=tail)
        self._lock = threading.Lock()
        ready = threading.Event()

        def drain():
            for line in self.proc.stdout:
                line = line.rstrip("\n")
                with self._lock:
                    self._tail.append(line)
                    m = LEVEL.match(line)
                    if m and m.group(1) in PROBLEM_LEVELS:
                        self._problems.append(line)
                    for name, pattern in self._patterns.items():
                        if pattern.search(line):
                            self._counts[name] += 1
                if self.port is None:
                    m = re.search(r"listening on \S+:(\d+)", line)
                    if m:
                        self.port = int(m.group(1))
                        ready.set()
            ready.set()

        self._reader = threading.Thread(target=drain, daemon=True)
        self._reader.start()
        if not ready.wait(start_timeout) or self.port is None:
            self.kill()
            raise RuntimeError(f"the server did not start: {' '.join(self.command)}\n{self.tail()}")

    def running(self):
        return self.proc.poll() is None

    def counts(self):
        """How many lines so far matched each pattern given as `count`."""
        with self._lock:
            return dict(self._counts)

    def problems(self):
        """The lines it logged at warning level or above."""
        with self._lock:
            return list(self._problems)

    def tail(self, lines=40):
        with self._lock:
            return "\n".join(list(self._tail)[-lines:])

    def rss_kib(self):
        """Resident memory (VmRSS), in KiB."""
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        raise RuntimeError("no VmRSS in /proc/PID/status")

    def open_fds(self):
        return len(os.listdir(f"/proc/{self.pid}/fd"))

    def stop(self, timeout=15):
        """SIGTERM, then its exit code (None if it had to be killed after `timeout` seconds)."""
        if self.running():
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            code = None
        self._reader.join(5)  # the rest of what it printed
        return code

    def kill(self):
        if self.running():
            self.proc.kill()
        self.proc.wait()
