"""A raw ASGI 3 application for tests/test_asgi.py: the scope as JSON, bodies,
streaming, the client leaving, errors before and after the response started,
an application that returns without answering, HEAD, files, lifespan state.
What happened out of sight (a disconnect noticed) is kept in EVENTS and
answered at /events, so that a test waits for it rather than for a time."""

import asyncio
import hashlib
import json
import os
import urllib.parse

EVENTS = []
BARRIER = []
ARRIVED = asyncio.Event()


async def body_of(receive):
    chunks = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise OSError("client left")
        chunks.append(message["body"])
        if not message.get("more_body", False):
            return b"".join(chunks)


async def answer(send, body, status=200, headers=((b"content-type", b"text/plain"),)):
    await send({"type": "http.response.start", "status": status, "headers": list(headers)})
    await send({"type": "http.response.body", "body": body})


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                scope["state"]["started_pid"] = os.getpid()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    assert scope["type"] == "http"
    path = scope["path"][len(scope["root_path"]):]  # the path includes root_path (as uvicorn's)
    if path == "/pid":
        return await answer(send, str(os.getpid()).encode())
    if path == "/events":
        return await answer(send, json.dumps(EVENTS).encode())
    if path.startswith("/scope") or scope["query_string"] == b"scope":  # any path: ?scope
        body = await body_of(receive)
        shown = {key: value for key, value in scope.items() if key not in ("state", "extensions")}
        shown["raw_path"] = scope["raw_path"].decode("latin-1")
        shown["query_string"] = scope["query_string"].decode("latin-1")
        shown["headers"] = [[n.decode("latin-1"), v.decode("latin-1")] for n, v in scope["headers"]]
        shown["state"] = scope.get("state")
        shown["extensions"] = sorted(scope.get("extensions") or {})
        shown["body"] = body.decode("latin-1")
        return await answer(send, json.dumps(shown).encode(),
                            headers=[(b"content-type", b"application/json")])
    if path == "/echo":  # each piece of the body back as it comes, streamed
        await send({"type": "http.response.start", "status": 200, "headers": []})
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return
            await send({"type": "http.response.body", "body": message["body"],
                        "more_body": bool(message.get("more_body"))})
            if not message.get("more_body"):
                return
    if path == "/impatient":  # receive() under asyncio.wait_for, cancelled while it waits
        digest, size, cancelled = hashlib.sha256(), 0, 0
        while True:
            try:
                message = await asyncio.wait_for(receive(), 0.01)
            except asyncio.TimeoutError:
                cancelled += 1
                EVENTS.append(f"impatient: {size} bytes, a receive cancelled")
                continue
            digest.update(message["body"])
            size += len(message["body"])
            if not message.get("more_body"):
                break
        return await answer(send, f"{size} {digest.hexdigest()}".encode())
    if path == "/ignore-disconnect":  # never answers, never asks: waits until stopped
        EVENTS.append("ignore-disconnect: started")
        await asyncio.Event().wait()
    if path == "/upload-disconnect":  # reads until the client leaves mid-body
        EVENTS.append("upload-disconnect: reading")
        while True:
            message = await receive()
            if message["type"] != "http.request" or not message.get("more_body"):
                EVENTS.append(f"upload-disconnect: {message['type']}")
                return
    if path == "/upload":
        digest, size = hashlib.sha256(), 0
        while True:
            message = await receive()
            digest.update(message["body"])
            size += len(message["body"])
            if not message.get("more_body"):
                break
        return await answer(send, f"{size} {digest.hexdigest()}".encode())
    if path == "/stream":
        count = int(scope["query_string"].decode().partition("=")[2] or 3)
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/plain")]})
        for i in range(count):
            await send({"type": "http.response.body", "body": b"chunk %d\n" % i, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
        return
    if path == "/declared":  # a Content-Length that is not the body's: ?declared=N&send=M
        query = dict(urllib.parse.parse_qsl(scope["query_string"].decode()))
        return await answer(send, b"x" * int(query["send"]),
                            headers=[(b"content-length", query["declared"].encode())])
    if path == "/stream-length":  # identity framing: the application's Content-Length
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", b"10")]})
        await send({"type": "http.response.body", "body": b"01234", "more_body": True})
        await send({"type": "http.response.body", "body": b"56789"})
        return
    if path == "/forever":  # streams until the client leaves: send raises OSError
        await send({"type": "http.response.start", "status": 200, "headers": []})
        block = b"x" * 65536
        try:
            while True:
                await send({"type": "http.response.body", "body": block, "more_body": True})
        except OSError:
            EVENTS.append("forever: send raised OSError")
            raise
    if path == "/wait-disconnect":  # answers nothing; waits for the client to leave
        await body_of(receive)
        EVENTS.append("wait-disconnect: waiting")
        message = await receive()
        EVENTS.append(f"wait-disconnect: {message['type']}")
        return
    if path == "/error-before":
        raise RuntimeError("boom before the response")
    if path == "/error-after":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"partial", "more_body": True})
        raise RuntimeError("boom after the response started")
    if path == "/no-response":
        return
    if path == "/start-only":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        return
    if path == "/incomplete":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"partial", "more_body": True})
        return
    if path == "/bad-header":
        return await answer(send, b"no", headers=[(b"x-evil", b"a\r\nSet-Cookie: injected=1")])
    if path == "/bad-status":
        return await answer(send, b"no", status=1000)
    if path == "/after-complete":
        await answer(send, b"done")
        try:
            await send({"type": "http.response.body", "body": b"more"})
        except RuntimeError as exc:
            EVENTS.append(f"after-complete: {exc}")
        message = await receive()
        EVENTS.append(f"after-complete receive: {message['type']}")
        return
    if path == "/pathsend":
        name = urllib.parse.parse_qs(scope["query_string"].decode())["name"][0]
        size = os.path.getsize(name)
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/octet-stream"),
                                (b"content-length", str(size).encode())]})
        await send({"type": "http.response.pathsend", "path": name})
        return
    if path == "/big":  # more than the loop holds for a slow reader: send waits
        count = int(scope["query_string"].decode().partition("=")[2])
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for i in range(count):
            await send({"type": "http.response.body", "body": bytes([i % 256]) * 65536,
                        "more_body": True})
        await send({"type": "http.response.body", "body": b""})
        return
    if path == "/barrier":  # answers only once two requests are in flight at once
        BARRIER.append(1)
        if len(BARRIER) % 2 == 0:
            ARRIVED.set()
        await ARRIVED.wait()
        return await answer(send, b"met")
    if path == "/state":
        return await answer(send, json.dumps(scope.get("state")).encode())
    await answer(send, b"not found", status=404)
