"""A Starlette application with a lifespan that fills the state every request
sees, and shuts down with a line in the error log."""

import contextlib
import logging
import os

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route


@contextlib.asynccontextmanager
async def lifespan(app):
    yield {"db": "connected", "pid": os.getpid()}
    logging.getLogger("forker.error").warning("starlette lifespan shut down in %d", os.getpid())


async def pid(request: Request):
    return PlainTextResponse(str(os.getpid()))


async def state(request: Request):
    request.state.scratch = "per request"  # must not leak into the next request's state
    return JSONResponse({"db": request.state.db, "pid": request.state.pid,
                         "leak": getattr(request.state, "leak", None)})


async def leak(request: Request):
    request.state.leak = "leaked"
    return PlainTextResponse("ok")


app = Starlette(routes=[Route("/pid", pid), Route("/state", state), Route("/leak", leak)],
                lifespan=lifespan)
