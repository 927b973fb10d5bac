"""Comparison server: a quart-trio WebSocket route served by hypercorn (trio
worker), the "framework route" design.

    python quart_route.py PORT

``/ws`` is a ``@app.websocket`` route whose handler sends every message queued
for its client with ``await websocket.send(...)``; ``GET /blast/M`` queues M
text messages of about 100 bytes for every connected client.
"""

from __future__ import annotations

import argparse
import json
import math
from functools import partial
from typing import Any

import trio
from hypercorn.config import Config
from hypercorn.trio import serve
from quart import websocket
from quart_trio import QuartTrio

PAYLOAD = json.dumps({"type": "msg", "data": "x" * 100}, separators=(",", ":"))

app = QuartTrio(__name__)
clients: set[trio.MemorySendChannel[str]] = set()


@app.websocket("/ws")
async def ws() -> None:
    send, receive = trio.open_memory_channel[str](math.inf)
    clients.add(send)
    try:
        await websocket.accept()
        async for message in receive:
            await websocket.send(message)
    finally:
        clients.discard(send)


@app.get("/blast/<int:count>")
async def blast(count: int) -> Any:
    targets = list(clients)
    for send in targets:
        for _ in range(count):
            send.send_nowait(PAYLOAD)
    return {"clients": len(targets), "messages": count}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("port", type=int)
    args = parser.parse_args()
    config = Config()
    config.bind = [f"127.0.0.1:{args.port}"]
    config.accesslog = None
    config.backlog = 4096
    try:
        trio.run(partial(serve, app, config))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
