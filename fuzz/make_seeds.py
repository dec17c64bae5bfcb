#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets to fuzz/corpus/<target>/ (committed; run again after
changing an input format). Each seed is a small valid input that reaches deep into its target."""
import os
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def u32(v):
    return struct.pack("<I", v & 0xFFFFFFFF)


def u64(v):
    return struct.pack("<Q", v)


def payload(data, text):
    return u32(1 if text else 0) + u64(len(data)) + data


# --- the codec (docs/wasm-abi.md) -------------------------------------------------------------------

def to_guest():
    return {
        "init": u32(0),
        "connect": u32(1) + u32(7),
        "disconnect": u32(2) + u32(7),
        "message_text": u32(3) + u32(1) + payload("héllo".encode(), True),
        "message_binary": u32(3) + u32(2) + payload(bytes(range(40)), False),
        "timer": u32(4),
    }


def from_guest():
    return {
        "broadcast_hi": u32(0) + u32(0) + payload(b"hi", True),  # the ABI's worked example
        "client_binary": u32(0) + u32(1) + u32(3) + payload(b"\x00\xff\x10", False),
        "everyone_except_text": u32(0) + u32(2) + u32(1) + payload("ünï".encode(), True),
        "set_timer": u32(1) + u32(250),
        "bad_tag": u32(2) + u32(0),
    }


# --- WebSocket frames: 4 bytes of options (side, rsv1, mode; max size; split seed), then the stream --

def frame(opcode, data, fin=True, rsv1=False, mask=None):
    first = (0x80 if fin else 0) | (0x40 if rsv1 else 0) | opcode
    n = len(data)
    m = 0x80 if mask else 0
    if n < 126:
        head = bytes([first, m | n])
    elif n <= 0xFFFF:
        head = bytes([first, m | 126]) + struct.pack(">H", n)
    else:
        head = bytes([first, m | 127]) + struct.pack(">Q", n)
    if mask:
        head += mask
        data = bytes(b ^ mask[i % 4] for i, b in enumerate(data))
    return head + data


def options(client=False, rsv1=False, structured=False, max_size=0xFFFF, seed=7):
    flags = (1 if client else 0) | (2 if rsv1 else 0) | (4 if structured else 0)
    return bytes([flags, max_size >> 8, max_size & 0xFF, seed])


def frames():
    k = b"\x11\x22\x33\x44"
    close = struct.pack(">H", 1000) + b"bye"
    return {
        "server_text": options() + frame(1, "hello ✓".encode(), mask=k),
        "server_fragments_ping": options(seed=3)
        + frame(1, b"frag", fin=False, mask=k)
        + frame(9, b"ping", mask=k)
        + frame(0, "ment €".encode(), mask=k)
        + frame(8, close, mask=k),
        "server_binary_126": options(seed=99) + frame(2, bytes(range(200)), mask=k),
        "server_too_big": options(max_size=16) + frame(2, bytes(64), mask=k),
        "client_unmasked": options(client=True) + frame(1, b"hi") + frame(10, b"pong") + frame(8, close),
        "client_bad_utf8": options(client=True) + frame(1, b"\xed\xa0\x80"),
        "rsv1_compressed": options(rsv1=True) + frame(1, b"\xff\x00", rsv1=True, mask=k),
        "structured": options(structured=True) + bytes(range(1, 120)),
        "structured_client": options(client=True, structured=True, seed=200) + b"\x00\x01\x02text\x03" * 12,
    }


# --- HTTP targets ------------------------------------------------------------------------------------

def http():
    return {
        "status": b"/status",
        "ws_default": b"/ws",
        "ws_room": b"/ws/room%20one?x=1",
        "ws_two_segments": b"/ws/a/b",
        "ws_utf8": "/ws/caf%C3%A9".encode(),
        "dir_redirect": b"/sub",
        "file": b"/sub/page.css?v=2",
        "dotdot": b"/%2e%2e/outside/secret.txt",
        "symlink_out": b"/link_out/secret.txt",
        "space": b"/a%20b.txt",
        "key": b"dGhlIHNhbXBsZSBub25jZQ==",
    }


# --- stateroom.toml ----------------------------------------------------------------------------------

def toml():
    return {
        "template": b'static_files = "static"\n[service]\ntarget = "counter"\n[server]\nport = 8080\n',
        "full": b'static_files = "static"\n[service]\ntarget = "counter"\n[server]\nport = 9000\n'
        b'host = "127.0.0.1"\nthreads = 2\nclient_files = "static"\ndefault_room = "lobby"\n'
        b'room_grace = "never"\nmax_message_size = "1MiB"\nmax_queued = 4194304\nmax_room_queue = "4MiB"\n'
        b'write_timeout = "30s"\nping_interval = 30\nidle_timeout = "2m"\nclose_timeout = "5s"\n'
        b'log_level = "debug"\nmemory_limit = "64MiB"\ncpu_limit = "250ms"\nmax_rooms = 10\nmodule_cache = true\n',
        "sources": b'[service]\nsources = ["service.cpp", "src/a.cpp"]\n',
        "both": b'[service]\ntarget = "x"\nsources = ["service.cpp"]\n',
        "broken": b'[service]\ntarget = \n',
    }


# --- the wasm host: byte 0 (v1, batch, sender), then messages as FuzzedDataProvider's random-length
# strings (a backslash doubled; a backslash and another byte end one) -----------------------------

def fdp_strings(chunks):
    out = b""
    for c in chunks:
        out += c.replace(b"\\", b"\\\\") + b"\\x"
    return out


def guest():
    v2 = [
        u32(0) + u32(0) + payload(b"hi", True),
        u32(0) + u32(1) + u32(2) + payload(b"\x00\x01\\", False),
        u32(0) + u32(2) + u32(1) + payload("ü".encode(), True),
        u32(1) + u32(0),
    ]
    v1 = [
        b"\x00" + struct.pack("<i", 0) + b"hello",
        b"\x01" + struct.pack("<i", -1) + b"\xff\xfe",
        b"\x00" + struct.pack("<i", 2) + "ß".encode(),
        b"\x02" + struct.pack("<i", 50),
    ]
    return {
        "v2_one_by_one": bytes([0b0000]) + fdp_strings(v2),
        "v2_batch": bytes([0b0110]) + fdp_strings(v2),
        "v2_bad_utf8": bytes([0b0010]) + fdp_strings(v2[:1] + [u32(0) + u32(0) + payload(b"\xc0\xaf", True)]),
        "v1": bytes([0b0001]) + fdp_strings(v1),
        "v1_bad_utf8": bytes([0b1001]) + fdp_strings([b"\x00" + struct.pack("<i", 0) + b"\xed\xa0\x80"]),
    }


def deflate():
    import zlib

    def raw(data, level=1, bits=15, final=False):
        c = zlib.compressobj(level, zlib.DEFLATED, -bits)
        out = c.compress(data) + c.flush(zlib.Z_FINISH if final else zlib.Z_SYNC_FLUSH)
        return out if final else out[:-4]  # without the 00 00 FF FF a sender removes

    msg = b'{"type":"state","players":[{"id":1,"x":12.5},{"id":2,"x":0.5}]}' * 4
    # Context takeover: the second message refers to the first.
    c = zlib.compressobj(1, zlib.DEFLATED, -15)
    first = c.compress(msg) + c.flush(zlib.Z_SYNC_FLUSH)
    second = c.compress(msg) + c.flush(zlib.Z_SYNC_FLUSH)
    return {
        "offer_browser": bytes([6]) + b"permessage-deflate; client_max_window_bits",
        "offer_many": bytes([3]) + b"permessage-deflate; server_max_window_bits=10; client_no_context_takeover, "
                                   b"permessage-deflate; client_max_window_bits=\"9\", permessage-deflate",
        "offer_bad": bytes([6]) + b"permessage-deflate; server_max_window_bits=8, x-foo; a=\"b,c\"",
        "inflate_one": bytes([0x16]) + raw(msg),
        "inflate_context": bytes([0x1E]) + first[:-4] + b"\xff\x00" + second[:-4],
        "inflate_final_block": bytes([0x16]) + raw(b"hello", final=True) + b"\xff\x00" + raw(msg, 6, 9),
        "inflate_bomb": bytes([0x16]) + raw(b"\0" * (1 << 20), 9),
    }


def gate():
    """Origin, Authorization, query, room id and clock, separated by NUL bytes."""
    def fields(*parts):
        return b"\0".join(p.encode() if isinstance(p, str) else p for p in parts)
    return {
        "listed": fields("https://a.example", "", "", "lobby", "1700000000"),
        "default-port": fields("HTTP://B.EXAMPLE:80", "", "", "lobby", "0"),
        "ipv6": fields("http://[::1]:8080", "", "", "r", ""),
        "not-an-origin": fields("null", "", "", "r", "x"),
        "bearer": fields("", "Bearer abc.def", "", "room", "1"),
        "query": fields("", "", "user=7&token=a%2Eb&x", "room", "2"),
        "bad-escape": fields("", "", "token=%zz", "room", "3"),
        "long": fields("", "Bearer " + "A" * 1100, "", "room", "4"),
        "room-with-newline": fields("", "", "", "a\nb", "5"),
    }


SEEDS = {
    "codec_to_guest": to_guest,
    "codec_from_guest": from_guest,
    "websocket_frames": frames,
    "permessage_deflate": deflate,
    "http_route": http,
    "auth_gate": gate,
    "stateroom_toml": toml,
    "wasm_guest_output": guest,
}


def main():
    for target, make in SEEDS.items():
        d = os.path.join(HERE, "corpus", target)
        os.makedirs(d, exist_ok=True)
        for name in os.listdir(d):
            os.remove(os.path.join(d, name))
        for name, data in make().items():
            with open(os.path.join(d, name), "wb") as f:
                f.write(data)
    return 0


if __name__ == "__main__":
    sys.exit(main())
