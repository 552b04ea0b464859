"""A plain Starlette endpoint for the ASGI servers: GET / answers the 11-byte
greeting as text/plain, as the other apps do."""

from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Route

from benchmarks.apps import GREETING


async def greeting(request):
    # Content-Type as the other apps send it (PlainTextResponse adds a charset)
    return Response(GREETING, headers={"content-type": "text/plain"})


app = Starlette(routes=[Route("/", greeting)])
