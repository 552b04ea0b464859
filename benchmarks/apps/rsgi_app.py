"""RSGI app for granian --interface rsgi."""

import asyncio

from benchmarks.apps import BIG, GREETING

HEADERS = [("content-type", "text/plain")]


async def app(scope, protocol):
    path = scope.path
    if path == "/":
        body = GREETING
    elif path == "/100k":
        body = BIG
    elif path == "/upload":
        body = str(len(await protocol())).encode()
    elif path == "/sleep1ms":
        await asyncio.sleep(0.001)
        body = GREETING
    else:
        protocol.response_empty(404, [])
        return
    protocol.response_bytes(200, HEADERS, body)
