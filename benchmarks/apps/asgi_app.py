"""ASGI app for uvicorn."""

import asyncio

from benchmarks.apps import BIG, GREETING


def _start(body):
    return {
        "type": "http.response.start",
        "status": 200,
        "headers": [
            (b"content-type", b"text/plain"),
            (b"content-length", str(len(body)).encode()),
        ],
    }


async def app(scope, receive, send):
    if scope["type"] != "http":  # lifespan: accept it and do nothing
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    path = scope["path"]
    if path == "/":
        body = GREETING
    elif path == "/100k":
        body = BIG
    elif path == "/upload":
        size = 0
        more = True
        while more:
            message = await receive()
            size += len(message.get("body", b""))
            more = message.get("more_body", False)
        body = str(size).encode()
    elif path == "/sleep1ms":
        await asyncio.sleep(0.001)
        body = GREETING
    else:
        await send(
            {
                "type": "http.response.start",
                "status": 404,
                "headers": [(b"content-length", b"0")],
            }
        )
        await send({"type": "http.response.body", "body": b""})
        return
    await send(_start(body))
    await send({"type": "http.response.body", "body": body})
