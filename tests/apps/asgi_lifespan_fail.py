"""An ASGI application whose lifespan startup fails: the worker cannot boot.
With LIFESPAN_BARRIER (a folder) and LIFESPAN_WORKERS (a count) in the
environment, each worker fails only once that many have reached the failure,
so that all fail together."""

import asyncio
import os


async def barrier():
    folder = os.environ.get("LIFESPAN_BARRIER")
    if not folder:
        return
    open(os.path.join(folder, str(os.getpid())), "w").close()
    for _ in range(1000):  # bounded: 10 s
        if len(os.listdir(folder)) >= int(os.environ["LIFESPAN_WORKERS"]):
            return
        await asyncio.sleep(0.01)


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        await receive()
        await barrier()
        await send({"type": "lifespan.startup.failed", "message": "database unreachable"})
        return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"never served"})
