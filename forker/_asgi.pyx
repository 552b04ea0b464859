# cython: language_level=3
"""The per-request part of forker.asgi, compiled: the HTTP scope, receive and
send of ASGI 3 (https://asgi.readthedocs.io/en/latest/specs/www.html) over the
engine's Exchange.

The engine knows nothing of ASGI: it calls Core(request, exchange) for each
request on its asyncio event loop (Engine.run_async) and runs the coroutine
this returns as the request's task. A Cycle turns the application's messages
into the engine's answers: the head and a whole body become one ResponsePlan
(make_plan: the same field checks and framing as every other answer), a
streamed body goes through Exchange.send, a file (http.response.pathsend)
through Exchange.send_file. forker.asgi.ASGIHandler subclasses Core and keeps
the rest in Python: the constant parts of the scope, and lifespan."""

cimport cython
from cpython.bytes cimport PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from libc.string cimport memchr

from forker._csrc cimport (fk_conn, fk_header, FK_REQ_ABSOLUTE_FORM, FK_REQ_CHUNKED,
                           FK_REQ_UPGRADE, FK_WS_BINARY, FK_WS_TEXT)
from forker._worker cimport (BodyStream, Exchange, Reply, Request, ResponsePlan, failure_plan,
                             make_plan, server_error_plan)

import logging
import zlib
from asyncio import CancelledError
from base64 import b64decode, b64encode
from binascii import Error as Base64Error
from hashlib import sha1
from urllib.parse import unquote_to_bytes

from forker.errors import RequestBodyError

log = logging.getLogger("forker.error")

cdef tuple STREAMED = ()  # the body of a plan whose body follows in pieces
cdef Py_ssize_t READ_SIZE = 65536  # bytes per read of a streamed request body
cdef str HTTP11 = "1.1"
cdef str HTTP10 = "1.0"
cdef dict DISCONNECT = {"type": "http.disconnect"}
cdef frozenset PROXY_FIELDS = frozenset((b"forwarded", b"x-forwarded-for", b"x-forwarded-proto",
                                         b"x-forwarded-host"))
cdef bytes WEBSOCKET_REFUSED = b"501 Not Implemented: websockets are not supported\n"
cdef list WEBSOCKET_FIELDS = [(b"Content-Type", b"text/plain; charset=utf-8"),
                              (b"Connection", b"close")]
cdef bytes WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455 1.3
cdef bytes WS_HEAD = (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                      b"Connection: Upgrade\r\nSec-WebSocket-Accept: ")
cdef dict WS_SCHEMES = {"http": "ws", "https": "wss", "ws": "ws", "wss": "wss"}
cdef frozenset TCHARS = frozenset(b"!#$%&'*+-.^_`|~0123456789"
                                  b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
cdef frozenset TOKEN_CHARS = frozenset("!#$%&'*+-.^_`|~0123456789"
                                       "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
# permessage-deflate (RFC 7692), as the websockets library's server by default:
# each side keeps its context between messages (unless the client asks
# otherwise), the server's window is at most 12 bits (4 KiB) and so is the
# client's when it lets the server choose (client_max_window_bits), with
# memLevel 5: about 40 KiB of zlib state per connection beside the inflater's
# window (32 KiB when the client does not bound its own).
cdef int DEFLATE_BITS = 12
cdef int DEFLATE_LEVEL = 6
cdef int DEFLATE_MEM_LEVEL = 5
cdef Py_ssize_t DEFLATE_MIN = 32  # shorter messages go uncompressed (RSV1 clear)
cdef bytes DEFLATE_TAIL = b"\x00\x00\xff\xff"  # the empty block each message ends with
cdef frozenset WINDOW_BITS = frozenset(["8", "9", "10", "11", "12", "13", "14", "15"])
# the websocket's life for the application (WSCycle.state)
cdef enum:
    WS_CONNECTING = 0  # websocket.connect not received yet, or no answer
    WS_DENYING = 1     # websocket.http.response.start sent: the body follows
    WS_OPEN = 2        # accepted: the 101 went
    WS_CLOSED = 3      # closed by the application, denied, or disconnected


class ClientDisconnected(OSError):
    """send() after the client left (ASGI spec 2.4: an OSError)."""


cdef class Core:
    """Calls an ASGI 3 application for each of the engine's requests."""
    cdef public object app
    cdef public object asgi        # the scope's "asgi" dict
    cdef public str root_path
    cdef public object state       # lifespan's state, copied into each scope; None: no state
    cdef public dict extensions    # the scope's "extensions"
    cdef public dict ws_extensions # a websocket scope's "extensions"
    cdef public bint websockets    # upgrades become websocket scopes (else 501)
    cdef public bint ws_deflate    # a client's offer of permessage-deflate is accepted
    cdef public long long ws_max_size  # largest message, also once inflated (else 1009)
    cdef dict names                # raw header name -> lowercased bytes

    def __init__(self, app, str root_path=""):
        self.app = app
        self.asgi = {"version": "3.0", "spec_version": "2.4"}
        self.root_path = root_path
        self.state = None
        self.extensions = {"http.response.pathsend": {}}
        self.ws_extensions = {"websocket.http.response": {}}
        self.websockets = True
        self.ws_deflate = True
        self.ws_max_size = 16 * 1024 * 1024
        self.names = {}

    def __call__(self, Request request, Exchange exchange):
        cdef Cycle cycle = Cycle.__new__(Cycle)
        cycle.core = self
        cycle.request = request
        cycle.exchange = exchange
        return cycle.run()

    cdef dict scope(self, Request req):
        """The HTTP scope of req, or its websocket scope for an upgrade to a
        websocket (Connection: upgrade, Upgrade: websocket); None for one when
        websockets are off."""
        cdef fk_conn *c = req._live()
        cdef fk_header *h
        cdef size_t i
        cdef dict names = self.names
        cdef list headers = []
        cdef dict proxied = None
        cdef bint websocket = False
        cdef bint absolute = (req._flags & FK_REQ_ABSOLUTE_FORM) != 0
        raw_path = PyBytes_FromStringAndSize(c.req.path, c.req.path_len)
        if absolute and c.req.path_len == 0:
            raw_path = b"/"  # "http://host": its path is empty (RFC 9112 3.2.4)
        if memchr(c.req.path, b"%", c.req.path_len) != NULL:
            path = unquote_to_bytes(raw_path).decode("utf-8", "replace")
        else:
            path = raw_path.decode("utf-8", "replace")
        query = b"" if c.req.query == NULL else PyBytes_FromStringAndSize(c.req.query,
                                                                          c.req.query_len)
        for i in range(c.req.num_headers):
            h = &c.headers[i]
            raw = PyBytes_FromStringAndSize(h.name, h.name_len)
            name = names.get(raw)
            if name is None:
                name = raw.lower()
                if len(names) < 1024:
                    names[raw] = name
            if absolute and name == b"host":
                # the absolute-form target's authority wins over Host (RFC 9112 3.2.2)
                value = PyBytes_FromStringAndSize(c.req.host, c.req.host_len)
            else:
                value = PyBytes_FromStringAndSize(h.value, h.value_len)
            if name == b"upgrade" and b"websocket" in value.lower():
                if not self.websockets:
                    return None  # refused before the application sees it
                websocket = (req._flags & FK_REQ_UPGRADE) != 0
            if name in PROXY_FIELDS:
                if proxied is None:
                    proxied = {}
                text = value.decode("latin-1")
                proxied[name] = proxied[name] + ", " + text if name in proxied else text
            headers.append((name, value))
        remote = req.remote_addr
        scope = {
            "type": "http",
            "asgi": self.asgi,
            "http_version": HTTP11 if req._minor == 1 else HTTP10,
            "method": req._get_method(),
            "scheme": req._scheme(),
            "path": self.root_path + path if self.root_path else path,
            "raw_path": raw_path,
            "query_string": query,
            "root_path": self.root_path,
            "headers": headers,
            "client": (remote, req.remote_port) if remote else None,
            "server": (req.server_addr, req.server_port or None),  # a unix socket: no port
            "extensions": self.extensions,
        }
        if self.state is not None:
            scope["state"] = self.state.copy()
        if proxied is not None:
            self.forwarded(scope, proxied)
        if websocket:
            del scope["method"]
            scope["type"] = "websocket"
            scope["scheme"] = WS_SCHEMES.get(scope["scheme"], "ws")
            scope["extensions"] = self.ws_extensions
            scope["subprotocols"] = subprotocols(headers)
        return scope

    def forwarded(self, dict scope, dict fields):
        """Applies a trusted proxy's forwarded fields ({lowercased name: value})
        to the scope; forker.asgi.ASGIHandler's, which knows the proxies."""


@cython.final
cdef class Cycle:
    """One request: the application's receive and send."""
    cdef Core core
    cdef Request request
    cdef Exchange exchange
    cdef bint body_done     # the last http.request went to the application
    cdef bint start_seen    # http.response.start was sent
    cdef bint gone          # the connection was lost under a send, or its body failed
    cdef object body_error  # the RequestBodyError of a body that failed (a stall, too large)
    cdef bint sent_all      # the last message of the response was sent
    cdef int status
    cdef list headers
    cdef BodyStream stream
    cdef object left        # bytes of a streamed body still to come (None: chunked)

    cdef bint streamed(self) except -1:
        """Whether the request's body is left to read from the client."""
        return self.request._live().body_stream != 0

    async def run(self):
        cdef Exchange ex = self.exchange
        cdef WSCycle ws
        try:
            scope = self.core.scope(self.request)
            if scope is None:
                ex.respond(make_plan(Reply(WEBSOCKET_REFUSED, 501, WEBSOCKET_FIELDS, None),
                                     self.request._minor, self.request._is_head()))
                return
            if scope["type"] == "websocket":
                ws = WSCycle.__new__(WSCycle)
                ws.http = self
                ws.exchange = ex
                ws.scope = scope
                await ws.run()
                return
        except Exception as exc:
            if not ex.started:
                ex.respond(failure_plan(exc, self.request))
            return
        try:
            result = await self.core.app(scope, self.receive, self.send)
        except BaseException as exc:
            if ex.closed or self.gone:
                log.debug("%s %s: the client left (%r)", scope["method"], scope["path"], exc)
                self.answer_body_error()
            elif isinstance(exc, CancelledError):  # the worker stops (fast, or out of time)
                log.debug("%s %s: cancelled, the worker stops", scope["method"], scope["path"])
            elif not ex.started:  # nothing is on the wire yet: the 500 can go
                ex.respond(failure_plan(exc, self.request))
            else:
                log.exception("error in ASGI application for %s %s after the response "
                              "started; closing the connection", scope["method"], scope["path"])
                ex.abort()
            return
        if result is not None:
            log.error("ASGI application returned %r rather than None, for %s %s",
                      result, scope["method"], scope["path"])
        if ex.closed or self.gone or ex.complete or self.sent_all:
            self.answer_body_error()
            return
        if not ex.started:
            log.error("ASGI application returned without %s a response, for %s %s",
                      "completing" if self.start_seen else "starting",
                      scope["method"], scope["path"])
            ex.respond(server_error_plan())
        else:
            log.error("ASGI application returned without completing the response, for %s %s; "
                      "closing the connection", scope["method"], scope["path"])
            ex.abort()

    cdef void answer_body_error(self):
        """The application ended, after receive told it of the client's leaving,
        without an answer: when the body failed while the client is still
        there (it stalled, sent too much, broke the chunked coding), the
        client gets the status that names it (408, 413, 400), and the
        connection closes."""
        if self.body_error is not None and not self.exchange.started and not self.exchange.closed:
            self.exchange.respond(failure_plan(self.body_error, self.request))

    async def receive(self):
        cdef Exchange ex = self.exchange
        if not self.body_done and not ex.complete and not ex.closed:
            if not self.streamed():
                self.body_done = True
                return {"type": "http.request", "body": self.request._get_body(),
                        "more_body": False}
            return await self.read_stream()
        if not ex.complete and not ex.closed:
            await ex.wait_closed()
        return DISCONNECT

    async def read_stream(self):
        """A body larger than body_buffer_size, a piece at a time as the
        client sends it: read on this thread without waiting (the loop's
        body_events, which lets TLS bodies stream too), waiting between reads
        for the loop's word that more came (FK_EV_BODY). A receive cancelled
        while it waits (asyncio.wait_for) loses nothing: no read is under way."""
        cdef Exchange ex = self.exchange
        cdef BodyStream stream
        if self.stream is None:
            self.stream = self.request._get_stream()
            self.left = self.stream.length
        stream = self.stream
        want = READ_SIZE if self.left is None else min(READ_SIZE, self.left)
        while True:
            if ex.closed or ex.complete:
                # the client left (or the response ended): the body ends with it
                self.body_done = True
                return DISCONNECT
            try:
                data = stream.read_ready(want)
            except RequestBodyError as exc:
                # the client left, stalled or sent a bad body: to the
                # application the client is gone (ASGI has no other word for
                # it), and the connection closes once the response, if any,
                # is given up
                log.info("%s %s: request body: %s", self.request.method, self.request.target,
                         exc)
                self.body_done = True
                self.gone = True
                self.body_error = exc
                return DISCONNECT
            if data is not None:
                break
            await ex.wait_body(stream.wait_ms())
        if self.left is not None:
            self.left -= len(data)
        more = bool(data) and self.left != 0
        self.body_done = not more
        return {"type": "http.request", "body": data, "more_body": more}

    async def send(self, message):
        cdef Exchange ex = self.exchange
        cdef ResponsePlan plan
        cdef int rc
        kind = message["type"]
        if ex.closed or self.gone:
            raise ClientDisconnected(f"the client left; {kind!r} was not sent")
        if not self.start_seen:
            if kind != "http.response.start":
                raise RuntimeError(f"expected ASGI message 'http.response.start', got {kind!r}")
            self.status = message["status"]
            self.headers = list(message.get("headers", ()))
            self.start_seen = True
            return
        if ex.complete or self.sent_all:
            raise RuntimeError(f"ASGI message {kind!r} sent after the response was complete")
        if kind == "http.response.body":
            body = message.get("body", b"")
            if type(body) is not bytes:
                body = bytes(body)
            more = message.get("more_body", False)
            if not ex.started:
                if more:
                    plan = make_plan(Reply(STREAMED, self.status, self.headers, None),
                                     self.request._minor, self.request._is_head())
                    rc = ex.respond(plan)
                    if rc >= 0 and body:
                        rc = ex.send(body, 0)
                else:
                    plan = make_plan(Reply(body, self.status, self.headers, None),
                                     self.request._minor, self.request._is_head())
                    rc = ex.respond(plan)
            else:
                rc = ex.send(body, not more)
            if not more:
                self.sent_all = True
                return  # over: a client that left meanwhile changes nothing for the application
            if rc == 1:
                await ex.wait_writable()
                rc = -1 if ex.closed else 0
            if rc < 0:
                self.gone = True
                raise ClientDisconnected(f"the client left; the body was not sent")
        elif kind == "http.response.pathsend":
            if ex.started:
                raise RuntimeError("http.response.pathsend after http.response.body")
            self.sent_all = True
            fileobj = open(message["path"], "rb")
            try:
                plan = make_plan(Reply(fileobj, self.status, self.headers, None),
                                 self.request._minor, self.request._is_head())
            except BaseException:
                fileobj.close()
                raise
            if plan.file_fd < 0:  # not a regular file: read it whole
                with fileobj:
                    data = fileobj.read()
                plan = make_plan(Reply(data, self.status, self.headers, None),
                                 self.request._minor, self.request._is_head())
                ex.respond(plan)
            else:
                ex.send_file(plan, fileobj)
        else:
            raise RuntimeError(f"unexpected ASGI message {kind!r} in an HTTP response")


cdef bint close_code_valid(object code):
    """Whether an application may send code in a close frame (fk_ws_close_code_valid)."""
    return type(code) is int and (1000 <= code <= 1003 or 1007 <= code <= 1014 or
                                  3000 <= code <= 4999)


cdef list subprotocols(list headers):
    """The subprotocols a websocket client offers (Sec-WebSocket-Protocol)."""
    cdef list offered = []
    for name, value in headers:
        if name == b"sec-websocket-protocol":
            for item in value.decode("latin-1").split(","):
                item = item.strip()
                if item:
                    offered.append(item)
    return offered


cdef list split_unquoted(str text, str sep):
    """text split at each sep outside a quoted string (RFC 9110 5.6.4); None
    when a quoted string does not end."""
    cdef list parts = []
    cdef Py_ssize_t start = 0, i = 0, n = len(text)
    cdef bint quoted = False
    while i < n:
        ch = text[i]
        if quoted:
            if ch == "\\":
                i += 1
            elif ch == '"':
                quoted = False
        elif ch == '"':
            quoted = True
        elif ch == sep:
            parts.append(text[start:i])
            start = i + 1
        i += 1
    if quoted:
        return None
    parts.append(text[start:])
    return parts


cdef str unquote(str text):
    """The content of a quoted string, its backslash escapes undone."""
    cdef list out = []
    cdef Py_ssize_t i = 0, n = len(text)
    if "\\" not in text:
        return text
    while i < n:
        if text[i] == "\\" and i + 1 < n:
            i += 1
        out.append(text[i])
        i += 1
    return "".join(out)


cdef bint is_token(str text):
    return bool(text) and all(ch in TOKEN_CHARS for ch in text)


cdef list extension_offers(list headers):
    """The extensions a websocket client offers (Sec-WebSocket-Extensions,
    RFC 6455 9.1), in order, as (name, [(parameter, value or None)]); an offer
    that does not parse is left out (declined)."""
    cdef list offers = []
    cdef list params
    for name, value in headers:
        if name != b"sec-websocket-extensions":
            continue
        items = split_unquoted(value.decode("latin-1"), ",")
        for item in items or ():
            if not item.strip():
                continue  # empty list elements are allowed (RFC 9110 5.6.1)
            parts = split_unquoted(item, ";")
            ext = parts[0].strip()
            if not is_token(ext):
                continue
            params = []
            for part in parts[1:]:
                key, eq, val = part.partition("=")
                key = key.strip()
                if not is_token(key):
                    break
                if eq:
                    val = val.strip()
                    n = len(val)
                    if n >= 2 and val[0] == '"' and val[n - 1] == '"':
                        val = unquote(val[1:n - 1])
                    if not is_token(val):
                        break  # a quoted value must still be a token (RFC 6455 9.1)
                    params.append((key, val))
                else:
                    params.append((key, None))
            else:
                offers.append((ext, params))
    return offers


cdef tuple deflate_agreement(list params):
    """Our answer to an offer of permessage-deflate with params (RFC 7692 7.1):
    (server_no_context_takeover, client_no_context_takeover,
    server_max_window_bits, client_max_window_bits or 0 when not named); None
    when the offer is declined (a parameter unknown, repeated or invalid)."""
    cdef set seen = set()
    cdef bint server_nct = False, client_nct = False
    cdef int server_bits = DEFLATE_BITS, client_bits = 0
    for key, val in params:
        if key in seen:
            return None
        seen.add(key)
        if key == "server_no_context_takeover" or key == "client_no_context_takeover":
            if val is not None:
                return None
            if key[0] == "s":
                server_nct = True
            else:
                client_nct = True
        elif key == "server_max_window_bits":
            if val not in WINDOW_BITS:
                return None
            server_bits = min(int(val), DEFLATE_BITS)
        elif key == "client_max_window_bits":
            if val is None:
                client_bits = DEFLATE_BITS
            elif val in WINDOW_BITS:
                client_bits = min(int(val), DEFLATE_BITS)
            else:
                return None
        else:
            return None
    return server_nct, client_nct, server_bits, client_bits


cdef object handshake_error(Request req, list headers):
    """Why an upgrade to a websocket is not a valid opening handshake (RFC 6455
    4.2.1), as (status, fields, text), with the client's key; or (None, key)."""
    key = None
    version = None
    for name, value in headers:
        if name == b"sec-websocket-key":
            key = value if key is None else b""  # twice: invalid
        elif name == b"sec-websocket-version":
            version = value.strip() if version is None else b""
    if req._get_method() != "GET" or req._minor != 1:
        return (400, [], b"a websocket opens with a GET in HTTP/1.1\n"), None
    if version != b"13":
        return (426, [(b"Sec-WebSocket-Version", b"13")],
                b"unsupported websocket version: this server speaks 13\n"), None
    try:
        if key is None or len(b64decode(key.strip(), validate=True)) != 16:
            raise ValueError(key)
    except (Base64Error, ValueError):
        return (400, [], b"missing or invalid Sec-WebSocket-Key\n"), None
    return None, key.strip()


@cython.final
cdef class WSCycle:
    """One websocket: the application's receive and send over the Exchange,
    which holds the connection from the upgrade until it closes."""
    cdef Cycle http          # the request's own cycle: the denial response goes through it
    cdef Exchange exchange
    cdef dict scope
    cdef bytes key
    cdef int state
    cdef bint connected      # websocket.connect went to the application
    # permessage-deflate, when the 101 accepted it
    cdef bint deflate
    cdef bint server_nct     # server_no_context_takeover: a new deflater per message
    cdef bint client_nct     # client_no_context_takeover: a new inflater per message
    cdef int server_bits     # our window (8: zlib cannot, so we send uncompressed)
    cdef int client_bits     # the client's window, 15 when it did not bound it
    cdef object deflater     # zlib's, kept between messages (context takeover)
    cdef object inflater
    cdef int failed          # the close code we failed the websocket with (fail), 0 none

    async def run(self):
        cdef Exchange ex = self.exchange
        cdef Cycle http = self.http
        scope = self.scope
        error, self.key = handshake_error(http.request, scope["headers"])
        if error is not None:  # refused without calling the application, as uvicorn
            status, fields, text = error
            ex.respond(make_plan(Reply(text, status, [(b"Content-Type", b"text/plain")] + fields,
                                       None), http.request._minor, False))
            return
        try:
            result = await http.core.app(scope, self.receive, self.send)
        except BaseException as exc:
            if isinstance(exc, CancelledError):  # the worker stops (fast, or out of time)
                log.debug("websocket %s: cancelled, the worker stops", scope["path"])
                if self.state == WS_OPEN and not ex.closed:
                    ex.ws_close(1001, b"")  # going away
            elif self.state == WS_OPEN and not ex.closed:
                log.exception("error in ASGI websocket application for %s; closing it (1011)",
                              scope["path"])
                ex.ws_close(1011, b"")
            elif not ex.started and not ex.closed:  # nothing went: not accepted, not denied
                log.exception("error in ASGI websocket application for %s before its "
                              "handshake", scope["path"])
                ex.respond(server_error_plan())
            elif not ex.closed:
                log.debug("websocket %s: %r", scope["path"], exc)
            return
        if result is not None:
            log.error("ASGI application returned %r rather than None, for websocket %s",
                      result, scope["path"])
        if (self.state == WS_CONNECTING or self.state == WS_DENYING) and not ex.started:
            log.error("ASGI application returned without accepting, denying or closing the "
                      "websocket %s", scope["path"])
            ex.respond(server_error_plan())
        elif self.state == WS_DENYING and not ex.complete:
            log.error("ASGI application returned without completing the denial response, "
                      "for websocket %s", scope["path"])
            ex.abort()
        # an open websocket is closed (1000) by Exchange.finish

    async def receive(self):
        cdef Exchange ex = self.exchange
        if not self.connected:
            self.connected = True
            return {"type": "websocket.connect"}
        while True:
            if self.state == WS_OPEN or ex.ws:
                item = ex.ws_take()
                if item is not None:
                    opcode, data, compressed = item
                    if compressed:
                        data = self.inflate(data)
                        if type(data) is int:  # 1002 or 1009
                            return self.fail(data)
                        if opcode == FK_WS_TEXT:
                            try:
                                text = data.decode("utf-8")
                            except UnicodeDecodeError:
                                return self.fail(1007)
                            return {"type": "websocket.receive", "text": text}
                    elif opcode == FK_WS_TEXT:  # checked as UTF-8 by the loop
                        return {"type": "websocket.receive", "text": data.decode("utf-8")}
                    return {"type": "websocket.receive", "bytes": data}
                closing = ex.ws_closing()
                if closing is not None:
                    self.state = WS_CLOSED
                    return {"type": "websocket.disconnect", "code": closing[0],
                            "reason": closing[1]}
            elif ex.closed or ex.complete:
                self.state = WS_CLOSED
                return {"type": "websocket.disconnect", "code": 1006, "reason": ""}
            await ex.wait_message()

    async def send(self, message):
        cdef Exchange ex = self.exchange
        cdef int rc
        kind = message["type"]
        if self.state == WS_CONNECTING:
            if ex.closed:
                raise ClientDisconnected(f"the client left; {kind!r} was not sent")
            if kind == "websocket.accept":
                head = self.head(message)  # raises on a field we refuse: nothing accepted
                self.state = WS_OPEN
                rc = ex.ws_accept(head, self.deflate)
                if rc == 1:
                    await ex.wait_writable()
                elif rc < 0:
                    raise ClientDisconnected("the client left before the websocket opened")
            elif kind == "websocket.close":
                self.state = WS_CLOSED  # before the handshake: 403 (ASGI spec)
                ex.respond(make_plan(Reply(b"", 403, [], None), self.http.request._minor,
                                     False))
            elif kind == "websocket.http.response.start":
                self.state = WS_DENYING
                await self.http.send({"type": "http.response.start",
                                      "status": message["status"],
                                      "headers": message.get("headers", ())})
            else:
                raise RuntimeError(f"expected ASGI message 'websocket.accept', "
                                   f"'websocket.close' or 'websocket.http.response.start', "
                                   f"got {kind!r}")
        elif self.state == WS_DENYING:
            if kind != "websocket.http.response.body":
                raise RuntimeError(f"expected ASGI message 'websocket.http.response.body', "
                                   f"got {kind!r}")
            more = message.get("more_body", False)
            if not more:
                self.state = WS_CLOSED
            await self.http.send({"type": "http.response.body", "body": message.get("body", b""),
                                  "more_body": more})
        elif self.state == WS_OPEN:
            if kind == "websocket.send":
                data = message.get("bytes")
                if data is not None:
                    opcode = FK_WS_BINARY
                    if type(data) is not bytes:
                        data = bytes(data)
                else:
                    text = message.get("text")
                    if text is None:
                        raise RuntimeError("websocket.send without 'bytes' nor 'text'")
                    opcode = FK_WS_TEXT
                    data = text.encode("utf-8")
                if self.deflate and PyBytes_GET_SIZE(data) >= DEFLATE_MIN and self.server_bits > 8:
                    rc = ex.ws_send(opcode, self.compress(data), True)
                else:
                    rc = ex.ws_send(opcode, data, False)
                if rc == 1:
                    await ex.wait_writable()
                    rc = -1 if ex.closed else 0
                if rc < 0:
                    raise ClientDisconnected("the websocket is closed; the message was not sent")
            elif kind == "websocket.close":
                code = message.get("code", 1000)
                if code is None:
                    code = 1000
                if not close_code_valid(code):
                    raise ValueError(f"invalid websocket close code {code!r}")
                reason = (message.get("reason") or "").encode("utf-8")
                if len(reason) > 123:
                    raise ValueError("a websocket close reason is at most 123 bytes")
                self.state = WS_CLOSED
                ex.ws_close(code, reason)
            else:
                raise RuntimeError(f"unexpected ASGI message {kind!r} on an open websocket")
        else:
            if ex.closed or self.failed or ex.ws_closing() is not None:
                raise ClientDisconnected(f"the websocket is closed; {kind!r} was not sent")
            raise RuntimeError(f"ASGI message {kind!r} sent after the websocket was closed")

    cdef dict fail(self, int code):
        """Fails the websocket over a message the loop could not check
        (permessage-deflate: 1002 not inflatable, 1007 not UTF-8, 1009 too
        large once inflated): our close frame goes, and the application hears
        of it as the client's leaving."""
        self.state = WS_CLOSED
        self.failed = code
        self.inflater = self.deflater = None
        self.exchange.ws_close(code, b"")
        return {"type": "websocket.disconnect", "code": code, "reason": ""}

    cdef object inflate(self, bytes data):
        """A compressed message inflated (RFC 7692 7.2.2), never past
        ws_max_size: its bytes, or the close code failing the websocket."""
        cdef Py_ssize_t limit = <Py_ssize_t>self.http.core.ws_max_size
        inflater = self.inflater
        if inflater is None:
            inflater = zlib.decompressobj(-self.client_bits)
        try:
            out = inflater.decompress(data, limit + 1)
            if len(out) > limit or inflater.unconsumed_tail:
                return 1009
            tail = inflater.decompress(DEFLATE_TAIL, limit + 1 - len(out))
            if tail:
                if len(out) + len(tail) > limit or inflater.unconsumed_tail:
                    return 1009
                out += tail
        except zlib.error:
            return 1002
        self.inflater = None if self.client_nct else inflater
        return out

    cdef bytes compress(self, bytes data):
        """A message deflated (RFC 7692 7.2.1): a sync flush, without the
        empty block that ends it."""
        deflater = self.deflater
        if deflater is None:
            deflater = zlib.compressobj(DEFLATE_LEVEL, zlib.DEFLATED, -self.server_bits,
                                        DEFLATE_MEM_LEVEL)
        out = deflater.compress(data) + deflater.flush(zlib.Z_SYNC_FLUSH)
        self.deflater = None if self.server_nct else deflater
        return out[:len(out) - 4]

    cdef bytes extensions(self, headers):
        """The Sec-WebSocket-Extensions field of the 101: the first offer of
        permessage-deflate we can take, unless the application named
        extensions itself (headers of websocket.accept) or deflate is off."""
        if not self.http.core.ws_deflate:
            return b""
        if headers:
            for name, _ in headers:
                if type(name) is str:
                    name = name.encode("latin-1")
                if bytes(name).lower() == b"sec-websocket-extensions":
                    return b""
        for ext, params in extension_offers(self.scope["headers"]):
            if ext.lower() != "permessage-deflate":
                continue
            agreed = deflate_agreement(params)
            if agreed is None:
                continue
            self.server_nct, self.client_nct, self.server_bits, client_bits = agreed
            self.client_bits = client_bits or 15
            self.deflate = True
            answer = "permessage-deflate"
            if self.server_nct:
                answer += "; server_no_context_takeover"
            if self.client_nct:
                answer += "; client_no_context_takeover"
            answer += f"; server_max_window_bits={self.server_bits}"
            if client_bits:
                answer += f"; client_max_window_bits={client_bits}"
            return b"Sec-WebSocket-Extensions: " + answer.encode("latin-1") + b"\r\n"
        return b""

    cdef bytes head(self, dict message):
        """The 101 answering websocket.accept."""
        cdef list parts = [WS_HEAD, b64encode(sha1(self.key + WS_GUID).digest()), b"\r\n"]
        subprotocol = message.get("subprotocol")
        if subprotocol is not None:
            value = subprotocol.encode("latin-1")
            if not value or any(ch not in TCHARS for ch in value):
                raise ValueError(f"invalid websocket subprotocol {subprotocol!r}")
            parts += [b"Sec-WebSocket-Protocol: ", value, b"\r\n"]
        headers = message.get("headers")
        extensions = self.extensions(headers)
        if extensions:
            parts.append(extensions)
        if headers:
            fields = make_plan(Reply(b"", 200, list(headers), None), 1, False).fields
            if fields:
                parts.append(fields)
        parts.append(b"\r\n")
        return b"".join(parts)
