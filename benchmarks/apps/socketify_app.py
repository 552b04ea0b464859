"""socketify's own interface: python -m socketify benchmarks.apps.socketify_app:run
--interface socketify."""

import asyncio

from benchmarks.apps import BIG, GREETING


def _greeting(res, req):
    res.write_header("Content-Type", "text/plain")
    res.end(GREETING)


def _big(res, req):
    res.write_header("Content-Type", "text/plain")
    res.end(BIG)


async def _upload(res, req):
    body = await res.get_data()
    res.write_header("Content-Type", "text/plain")
    res.end(str(len(body.getvalue())).encode())


async def _sleep(res, req):
    await asyncio.sleep(0.001)
    res.write_header("Content-Type", "text/plain")
    res.end(GREETING)


def run(app):
    app.get("/", _greeting)
    app.get("/100k", _big)
    app.post("/upload", _upload)
    app.get("/sleep1ms", _sleep)
