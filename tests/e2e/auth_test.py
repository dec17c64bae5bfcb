#!/usr/bin/env python3
"""The token minters of docs/auth.md, run as they stand there, against a real server.

Usage: auth_test.py DOCS/auth.md file|env PATH/TO/counter-native
       auth_test.py DOCS/auth.md file|env PATH/TO/stateroom serve PATH/TO/counter.wasm
Takes the first ```python and the first ```js block of the page (the Python and the Node.js
minter), starts the server with a secret (from a file given with --auth-token-secret-file, or
from the STATEROOM_AUTH_TOKEN_SECRET environment variable) and --allowed-origins, and connects with
Python `websockets` (an independent client): each minter's token lets its client into its room (the
default room, and one whose id needs percent-encoding, too); its expired token, its token for
another room, no token and a foreign Origin are refused with their status before the upgrade.
Exits non-zero on any failure.
"""
import asyncio
import json
import os
import pathlib
import re
import signal
import subprocess
import sys
import tempfile
import urllib.parse

import websockets

from harness import Server, check, run

TIMEOUT = 5
SECRET = "a secret of the end-to-end test, 41 bytes"
ORIGIN = "https://app.example"


def code_block(markdown, language):
    m = re.search(r"^```" + language + r"\n(.*?)^```", markdown, re.S | re.M)
    check(m, f"no ```{language} block in docs/auth.md")
    return m.group(1)


class Minters:
    """Runs each minter of the page in its own interpreter: python3, node."""

    def __init__(self, docs, workdir):
        with open(docs, encoding="utf-8") as f:
            markdown = f.read()
        with open(os.path.join(workdir, "mint.py"), "w", encoding="utf-8") as f:
            f.write(code_block(markdown, "python"))
        with open(os.path.join(workdir, "mint.mjs"), "w", encoding="utf-8") as f:
            f.write(code_block(markdown, "js"))
        self.commands = {
            "python": [sys.executable, "-c",
                       "import os, sys; sys.path.insert(0, sys.argv[1]); import mint; "
                       "print(mint.mint(os.environ['MINT_SECRET'], sys.argv[2], int(sys.argv[3])))", workdir],
            "node": ["node", "--input-type=module", "-e",
                     f"import {{ mint }} from {json.dumps(pathlib.Path(workdir, 'mint.mjs').as_uri())};"
                     "console.log(mint(process.env.MINT_SECRET, process.argv[1], Number(process.argv[2])));"],
        }

    def mint(self, which, room, seconds):
        out = subprocess.run(self.commands[which] + [room, str(seconds)], env={**os.environ, "MINT_SECRET": SECRET},
                             capture_output=True, text=True, timeout=30, check=False)
        check(out.returncode == 0, f"the {which} minter failed: {out.stderr}")
        return out.stdout.strip()


async def expect(ws, text):
    got = await asyncio.wait_for(ws.recv(), TIMEOUT)
    check(got == text, f"expected {text!r}, got {got!r}")


async def refused(url, status, **kwargs):
    try:
        async with websockets.connect(url, open_timeout=TIMEOUT, **kwargs):
            raise AssertionError(f"{url} was accepted")
    except websockets.exceptions.InvalidStatus as e:
        check(e.response.status_code == status, f"{url} got {e.response.status_code}, not {status}")
        return e.response.body.decode()


async def test_minter(base, minters, which):
    room = f"lobby-{which}"
    token = minters.mint(which, room, 60)
    check(re.fullmatch(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]{43}", token), f"not a token: {token!r}")
    async with websockets.connect(f"{base}/ws/{room}?token={token}", origin=ORIGIN) as a, \
            websockets.connect(f"{base}/ws/{room}?token={token}") as b:  # no Origin: not a browser
        await a.send("increment")
        await expect(a, "new value: 1")
        await expect(b, "new value: 1")
    async with websockets.connect(f"{base}/ws?token={minters.mint(which, 'default', 60)}") as c:
        await c.send("increment")
        await c.recv()
    cafe = f"caf\u00e9 \u2615 {which}"
    async with websockets.connect(f"{base}/ws/{urllib.parse.quote(cafe)}?token={minters.mint(which, cafe, 60)}") as d:
        await d.send("increment")
        await expect(d, "new value: 1")
    body = await refused(f"{base}/ws/{room}?token={minters.mint(which, room, -5)}", 403)
    check(body == "the token has expired\n", f"expired: {body!r}")
    body = await refused(f"{base}/ws/elsewhere?token={token}", 403)
    check(body == "the token is for another room\n", f"another room: {body!r}")


async def test_refusals(base):
    body = await refused(f"{base}/ws/lobby", 401)
    check(body == "a token is required: connect with ?token=<token>\n", f"no token: {body!r}")
    body = await refused(f"{base}/ws/lobby?token=abc", 401)
    check(body == "malformed token\n", f"malformed: {body!r}")
    body = await refused(f"{base}/ws/lobby", 403, origin="https://evil.example")
    check(body == "origin https://evil.example is not allowed\n", f"foreign origin: {body!r}")


async def test_shutdown(proc):
    proc.send_signal(signal.SIGTERM)
    code = await asyncio.to_thread(proc.wait, 15)
    check(code == 0, f"the server exited with {code}, not 0")


def main():
    if len(sys.argv) < 4 or sys.argv[2] not in ("file", "env"):
        print(__doc__)
        return 2
    with tempfile.TemporaryDirectory(prefix="stateroom-auth-") as workdir:
        return serve_and_check(sys.argv[1], sys.argv[2], sys.argv[3:], workdir)


def serve_and_check(docs, secret_from, command, workdir):
    env = dict(os.environ)
    env.pop("STATEROOM_AUTH_TOKEN_SECRET", None)
    if secret_from == "file":
        secret_file = os.path.join(workdir, "secret.txt")
        with open(secret_file, "w", encoding="utf-8") as f:
            f.write(SECRET + "\n")
        command += ["--auth-token-secret-file", secret_file]
    else:
        env["STATEROOM_AUTH_TOKEN_SECRET"] = SECRET
    minters = Minters(docs, workdir)
    server = Server(command + ["--allowed-origins", ORIGIN], env)
    base = f"ws://127.0.0.1:{server.port}"
    return run(server, [("python minter", test_minter(base, minters, "python")),
                        ("node minter", test_minter(base, minters, "node")),
                        ("refusals", test_refusals(base)),
                        ("graceful shutdown", test_shutdown(server.proc))])


if __name__ == "__main__":
    sys.exit(main())
