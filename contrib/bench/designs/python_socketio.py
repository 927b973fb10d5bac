"""Reference server: python-socketio's ``AsyncServer`` (ASGI) served by uvicorn.

    python python_socketio.py PORT

WebSocket transport only. Every client joins room ``room`` on connect, and also
``"r" + auth["room"]`` when its handshake ``auth`` carries a ``room``.
``GET /blast/M`` emits M events ``msg`` (a 100-byte string) to room ``room``;
``POST /emit/ROOM`` emits the JSON body as ``msg`` to ROOM. Both answer a small
JSON object.
"""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import unquote

import socketio  # type: ignore[import-untyped]
import uvicorn

PAYLOAD = "x" * 100
BLAST = re.compile(r"/blast/(\d+)")
EMIT = re.compile(r"/emit/([^/]+)")

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

sio = socketio.AsyncServer(async_mode="asgi", transports=["websocket"])


async def connect(sid: str, environ: dict[str, Any], auth: Any = None) -> None:
    await sio.enter_room(sid, "room")
    if isinstance(auth, dict) and auth.get("room") is not None:
        await sio.enter_room(sid, f"r{auth['room']}")


sio.on("connect", connect)


async def answer(send: Send, status: int, body: Any) -> None:
    data = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(data)).encode())]})
    await send({"type": "http.response.body", "body": data})


async def read_body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


async def http_app(scope: Scope, receive: Receive, send: Send) -> None:
    """The routes beside Socket.IO's own path."""
    if scope["type"] != "http":
        return
    path, method = scope["path"], scope["method"]
    if method == "GET" and (match := BLAST.fullmatch(path)):
        count = int(match.group(1))
        for _ in range(count):
            await sio.emit("msg", PAYLOAD, to="room")
        clients = len(sio.manager.rooms.get("/", {}).get("room", {}))
        await answer(send, 200, {"clients": clients, "messages": count})
    elif method == "POST" and (match := EMIT.fullmatch(path)):
        try:
            data = json.loads(await read_body(receive) or b"null")
        except ValueError:
            await answer(send, 400, {"error": "invalid JSON"})
            return
        await sio.emit("msg", data, to=unquote(match.group(1)))
        await answer(send, 202, {"published": 1})
    else:
        await answer(send, 404, {"error": "not found"})


app = socketio.ASGIApp(sio, other_asgi_app=http_app)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("port", type=int)
    args = parser.parse_args()
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning",
                ws_per_message_deflate=False, backlog=4096)


if __name__ == "__main__":
    main()
