"""Websocket applications for tests/test_asgi_ws.py: Starlette endpoints, a raw
ASGI application for the denial response, and a FastAPI route. What each
websocket's application saw at its end (websocket.disconnect codes, errors)
is kept per worker and read back through GET /events."""

import os

from fastapi import FastAPI
from fastapi import WebSocket as FastAPIWebSocket
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

EVENTS = []


async def events(request: Request):
    return JSONResponse(EVENTS)


async def pid(request: Request):
    return PlainTextResponse(str(os.getpid()))


async def echo(websocket: WebSocket):
    """Echoes each message as it came (text or bytes); records the close."""
    await websocket.accept()
    name = websocket.query_params.get("name", "echo")
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            EVENTS.append(f"{name} disconnect {message['code']} {message.get('reason', '')}")
            return
        if message.get("text") is not None:
            if message["text"] == "close please":
                await websocket.close(4001, "as you asked")
                EVENTS.append(f"{name} closed 4001")
                return
            await websocket.send_text(message["text"])
        else:
            await websocket.send_bytes(message["bytes"])


async def subprotocol(websocket: WebSocket):
    offered = websocket.scope["subprotocols"]
    chosen = "chat.v2" if "chat.v2" in offered else None
    await websocket.accept(subprotocol=chosen, headers=[(b"x-extra", b"yes")])
    await websocket.send_json({"offered": offered, "chosen": chosen,
                               "scheme": websocket.scope["scheme"],
                               "path": websocket.scope["path"],
                               "query": websocket.scope["query_string"].decode(),
                               "type": websocket.scope["type"],
                               "extensions": sorted(websocket.scope.get("extensions") or {})})
    await websocket.close()


async def deny(websocket: WebSocket):
    await websocket.close()  # before accepting: 403


async def server_close(websocket: WebSocket):
    await websocket.accept()
    await websocket.send_text("bye soon")
    await websocket.close(code=4000, reason="server says bye")


async def fails(websocket: WebSocket):
    await websocket.accept()
    raise RuntimeError("the application failed after accepting")


async def returns(websocket: WebSocket):
    await websocket.accept()
    await websocket.send_text("returning")  # and returns without closing: 1000


async def deny_raw(scope, receive, send):
    """The websocket denial response extension, by hand."""
    assert scope["type"] == "websocket"
    assert "websocket.http.response" in scope["extensions"]
    message = await receive()
    assert message["type"] == "websocket.connect"
    await send({"type": "websocket.http.response.start", "status": 401,
                "headers": [(b"content-type", b"text/plain"), (b"x-denied", b"yes")]})
    await send({"type": "websocket.http.response.body", "body": b"not ", "more_body": True})
    await send({"type": "websocket.http.response.body", "body": b"you"})


async def bad_accept(scope, receive, send):
    """websocket.accept with a field the server refuses: send raises, and
    the application may catch it (?catch) or not."""
    await receive()
    try:
        await send({"type": "websocket.accept", "headers": [(b"x-bad", b"a\r\nb: c")]})
    except ValueError:
        if scope["query_string"] != b"catch":
            raise


async def bad_denial(scope, receive, send):
    """A denial response whose field the server refuses."""
    await receive()
    await send({"type": "websocket.http.response.start", "status": 401,
                "headers": [(b"bad name", b"v")]})
    await send({"type": "websocket.http.response.body", "body": b"no"})


async def push(websocket: WebSocket):
    """Sends n messages of size bytes without reading: the writer's backpressure."""
    await websocket.accept()
    n = int(websocket.query_params["n"])
    size = int(websocket.query_params["size"])
    for i in range(n):
        await websocket.send_bytes(i.to_bytes(4, "big") + b"x" * (size - 4))
    try:
        message = await websocket.receive()
        EVENTS.append(f"push disconnect {message.get('code')}")
    except WebSocketDisconnect as exc:
        EVENTS.append(f"push disconnect {exc.code}")


app = Starlette(routes=[
    Route("/events", events),
    Route("/pid", pid),
    WebSocketRoute("/echo", echo),
    WebSocketRoute("/subprotocol", subprotocol),
    WebSocketRoute("/deny", deny),
    WebSocketRoute("/server-close", server_close),
    WebSocketRoute("/fails", fails),
    WebSocketRoute("/returns", returns),
    WebSocketRoute("/push", push),
    Mount("/raw", app=deny_raw),
    Mount("/bad-accept", app=bad_accept),
    Mount("/bad-denial", app=bad_denial),
])


fastapi_app = FastAPI()


@fastapi_app.websocket("/items/{item_id}")
async def item_socket(websocket: FastAPIWebSocket, item_id: int, q: str = "none"):
    await websocket.accept()
    async for text in websocket.iter_text():
        await websocket.send_json({"item": item_id, "q": q, "got": text})


@fastapi_app.get("/pid")
async def fastapi_pid():
    return PlainTextResponse(str(os.getpid()))
