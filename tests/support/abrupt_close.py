"""Ways a client of the Python `websockets` library (asyncio) can vanish without a close frame,
as a crashed program, a dropped network or a killed process does. Each leaves the connection
object closed on our side at once; the server learns of it only from TCP.
"""
import asyncio
import os
import socket
import struct


def _socket(ws):
    return ws.transport.get_extra_info("socket")


def reset(ws):
    """A TCP reset (RST): linger 0, then close."""
    _socket(ws).setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    ws.transport.abort()


def eof(ws):
    """A TCP FIN where the close frame should have been, then gone."""
    _socket(ws).shutdown(socket.SHUT_WR)
    ws.transport.abort()


async def partial_frame(ws, announced=1000, given=100):
    """The first `given` bytes of a masked text frame that announces `announced`, a moment for them
    to arrive, then a reset: the message must never be delivered."""
    mask = os.urandom(4)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(b"x" * given))  # valid UTF-8 once unmasked
    ws.transport.write(bytes([0x81, 0x80 | 126]) + struct.pack("!H", announced) + mask + masked)
    await asyncio.sleep(0.05)
    reset(ws)

