"""An ASGI application that does not speak lifespan (raises on that scope):
served all the same with --lifespan auto."""


async def app(scope, receive, send):
    if scope["type"] != "http":
        raise ValueError(f"unsupported scope {scope['type']!r}")
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"no lifespan here"})
