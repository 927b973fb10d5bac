"""Comparison server: a raw Trio WebSocket server, the "own frame writer" design.

    python raw_trio.py PORT [--coalesce]

``/ws`` is a WebSocket endpoint (wsproto does the handshake and parses client
frames); ``GET /blast/M`` sends M text messages of about 100 bytes to every
connected client. Server frames are encoded once (unmasked text frame) and the
same bytes are queued to every client's writer task. Without ``--coalesce``
the writer makes one ``send_all`` per frame; with it, the writer drains
everything queued and writes it with a single ``send_all``.
"""

from __future__ import annotations

import argparse
import json
import math
import struct
from functools import partial

import trio
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, CloseConnection, Ping, Request
from wsproto.utilities import RemoteProtocolError

PAYLOAD = json.dumps({"type": "msg", "data": "x" * 100}, separators=(",", ":")).encode()


def text_frame(payload: bytes) -> bytes:
    n = len(payload)
    if n < 126:
        return bytes((0x81, n)) + payload
    if n < 65536:
        return struct.pack("!BBH", 0x81, 126, n) + payload
    return struct.pack("!BBQ", 0x81, 127, n) + payload


class Client:
    def __init__(self) -> None:
        self.send, self.receive = trio.open_memory_channel[bytes](math.inf)


class RawServer:
    def __init__(self, coalesce: bool) -> None:
        self.coalesce = coalesce
        self.clients: set[Client] = set()

    async def handle(self, stream: trio.SocketStream) -> None:
        buf = bytearray()
        try:
            while b"\r\n\r\n" not in buf:
                chunk = await stream.receive_some(65536)
                if not chunk or len(buf) > 16384:
                    return
                buf += chunk
            line = bytes(buf).split(b"\r\n", 1)[0].decode("latin-1").split(" ")
            path = line[1] if len(line) == 3 else ""
            if path.startswith("/blast/"):
                await self.blast(stream, int(path.rsplit("/", 1)[1]))
            elif path.split("?")[0] == "/ws":
                await self.websocket(stream, bytes(buf))
            else:
                await stream.send_all(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n"
                                      b"connection: close\r\n\r\n")
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            with trio.move_on_after(1) as scope:
                scope.shield = True
                await stream.aclose()

    async def blast(self, stream: trio.SocketStream, count: int) -> None:
        frame = text_frame(PAYLOAD)
        clients = list(self.clients)
        for client in clients:
            send = client.send.send_nowait
            try:
                for _ in range(count):
                    send(frame)
            except trio.ClosedResourceError:
                pass
        body = json.dumps({"clients": len(clients), "messages": count}).encode()
        await stream.send_all(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                              b"content-length: %d\r\nconnection: close\r\n\r\n%s"
                              % (len(body), body))

    async def websocket(self, stream: trio.SocketStream, head: bytes) -> None:
        ws = WSConnection(ConnectionType.SERVER)
        ws.receive_data(head)
        if not any(isinstance(e, Request) for e in ws.events()):
            return
        await stream.send_all(ws.send(AcceptConnection()))
        client = Client()
        self.clients.add(client)
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self.writer, stream, client)
                await self.reader(stream, ws, client)
                client.send.close()  # the writer flushes what is queued, then ends
                nursery.cancel_scope.deadline = trio.current_time() + 1
        finally:
            self.clients.discard(client)

    async def reader(self, stream: trio.SocketStream, ws: WSConnection, client: Client) -> None:
        while True:
            data = await stream.receive_some(65536)
            if not data:
                return
            try:
                ws.receive_data(data)
                for event in ws.events():
                    if isinstance(event, Ping):
                        client.send.send_nowait(ws.send(event.response()))
                    elif isinstance(event, CloseConnection):
                        client.send.send_nowait(ws.send(event.response()))
                        return
            except RemoteProtocolError:
                return

    async def writer(self, stream: trio.SocketStream, client: Client) -> None:
        receive = client.receive
        if not self.coalesce:
            async for frame in receive:
                await stream.send_all(frame)
            return
        async for frame in receive:
            frames = [frame]
            while True:
                try:
                    frames.append(receive.receive_nowait())
                except trio.WouldBlock:
                    break
            await stream.send_all(frames[0] if len(frames) == 1 else b"".join(frames))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("port", type=int)
    parser.add_argument("--coalesce", action="store_true",
                        help="one send_all per writer wake-up instead of one per frame")
    args = parser.parse_args()
    server = RawServer(args.coalesce)
    try:
        trio.run(partial(trio.serve_tcp, server.handle, args.port, host="127.0.0.1"))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
