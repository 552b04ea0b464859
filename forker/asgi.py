"""ASGI 3 (https://asgi.readthedocs.io/) on the worker's asyncio event loop.

    handler = ASGIHandler(app, config)
    handler(request, exchange) -> the coroutine answering the request

The engine runs the C loop inside an asyncio event loop (uvloop when
installed) on the worker's one thread (Engine.run_async) and calls the
handler for each request; the per-request part (scope, receive, send) is
compiled (forker/_asgi.pyx, the base class of ASGIHandler). This module holds
what happens once per worker: the event loop and the lifespan protocol.

The "http", "websocket" and "lifespan" scopes; a websocket's framing is the C
loop's (csrc/fk_loop_ws.c), its handshake and messages forker/_asgi.pyx's
(WSCycle). With ws "none" an upgrade is answered 501 before any application
sees it.
"""

from __future__ import annotations

import asyncio
import logging

from ._asgi import ClientDisconnected as ClientDisconnected
from ._asgi import Core
from .errors import AppImportError
from .wsgi import Proxies

TYPE_CHECKING = False  # not typing's: a worker process does not import typing
if TYPE_CHECKING:
    from typing import Any, Dict, Optional

    from .config import Config

log = logging.getLogger("forker.error")


class LifespanFailure(AppImportError):
    """The application's lifespan startup failed: the worker cannot serve."""


class ASGIHandler(Core, Proxies):
    """An ASGI 3 application served by the engine's coroutine handlers."""

    interface = "asgi"

    def __init__(self, app: Any, config: Config) -> None:
        super().__init__(app, config.root_path)
        self._init_proxies(config)
        self.lifespan_mode: str = config.lifespan
        self.loop_kind: str = config.loop
        self.websockets = config.ws != "none"
        self.ws_deflate = config.ws_per_message_deflate
        self.ws_max_size = config.ws_max_size
        self._lifespan: Optional[Lifespan] = None

    def forwarded(self, scope: Dict[str, Any], fields: Dict[bytes, str]) -> None:
        """The client address, scheme and (with forwarded_host) Host that a
        trusted proxy's X-Forwarded-* or Forwarded fields give, as for WSGI."""
        client = scope["client"]
        if not self._is_trusted(client[0] if client else ""):
            return
        environ = {"HTTP_" + name.decode("latin-1").upper().replace("-", "_"): value
                   for name, value in fields.items()}
        self._apply_forwarded(environ)
        if "REMOTE_ADDR" in environ:
            scope["client"] = (environ["REMOTE_ADDR"], int(environ["REMOTE_PORT"] or 0))
        if "wsgi.url_scheme" in environ:
            scope["scheme"] = environ["wsgi.url_scheme"]
        if "HTTP_HOST" in environ:
            host = environ["HTTP_HOST"].encode("latin-1")
            scope["headers"] = [(name, host if name == b"host" else value)
                                for name, value in scope["headers"]]

    def event_loop(self) -> asyncio.AbstractEventLoop:
        """A new event loop for the worker: uvloop's when it is installed (the
        loop option)."""
        if self.loop_kind == "asyncio":
            return asyncio.new_event_loop()
        try:
            import uvloop
        except ImportError:
            if self.loop_kind == "uvloop":
                raise
            return asyncio.new_event_loop()
        loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
        return loop

    async def startup(self) -> None:
        """Runs the lifespan startup; raises LifespanFailure when it failed (or,
        with lifespan "on", when the application does not support it)."""
        if self.lifespan_mode == "off":
            return
        self.state = {}
        self._lifespan = Lifespan(self.app, self.asgi, self.state, self.lifespan_mode)
        await self._lifespan.startup()
        if not self._lifespan.supported:
            self.state = None

    async def shutdown(self) -> None:
        if self._lifespan is not None:
            await self._lifespan.shutdown()


class Lifespan:
    """The lifespan scope's task: startup, then shutdown when told."""

    def __init__(self, app: Any, asgi: Dict[str, str], state: Dict[str, Any], mode: str) -> None:
        self.app = app
        self.scope = {"type": "lifespan", "asgi": asgi, "state": state}
        self.mode = mode
        self.supported = True
        self.failure: Optional[str] = None
        self.messages: asyncio.Queue[Dict[str, Any]] = asyncio.Queue()
        self.started = asyncio.Event()
        self.stopped = asyncio.Event()
        self.task: Optional[asyncio.Task[None]] = None
        self.phase = "startup"

    async def startup(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self.main())
        await self.messages.put({"type": "lifespan.startup"})
        await self.started.wait()
        if self.failure is not None:
            raise LifespanFailure(f"application startup failed: {self.failure}")

    async def shutdown(self) -> None:
        if not self.supported or self.task is None or self.task.done():
            return
        self.phase = "shutdown"
        await self.messages.put({"type": "lifespan.shutdown"})
        await self.stopped.wait()
        if self.failure is not None:
            log.error("application shutdown failed: %s", self.failure)

    async def main(self) -> None:
        try:
            await self.app(self.scope, self.receive, self.send)
        except BaseException as exc:
            if self.phase == "startup" and not self.started.is_set():
                if self.mode == "auto":
                    # no lifespan support: raising on the scope is how most tell it
                    log.info("the application does not support ASGI lifespan (%r); going on "
                             "without it", exc)
                    self.supported = False
                else:
                    log.exception("the application's lifespan failed")
                    self.failure = repr(exc)
            elif self.phase == "shutdown" and self.failure is None:
                log.exception("the application's lifespan failed at shutdown")
                self.failure = repr(exc)
        else:
            if not self.started.is_set() and self.mode == "on":
                self.failure = "the lifespan protocol returned before startup completed"
        finally:
            self.started.set()
            self.stopped.set()

    async def receive(self) -> Dict[str, Any]:
        return await self.messages.get()

    async def send(self, message: Dict[str, Any]) -> None:
        kind = message.get("type")
        if kind == "lifespan.startup.complete":
            self.started.set()
        elif kind == "lifespan.startup.failed":
            self.failure = message.get("message") or "lifespan.startup.failed"
            self.started.set()
        elif kind == "lifespan.shutdown.complete":
            self.stopped.set()
        elif kind == "lifespan.shutdown.failed":
            self.failure = message.get("message") or "lifespan.shutdown.failed"
            self.stopped.set()
        else:
            raise RuntimeError(f"unexpected ASGI message {kind!r} in the lifespan scope")
