# Included by forker/_worker.pyx (declarations in forker/_worker.pxd).
#
# The Engine on an asyncio event loop, for a handler that answers from a
# coroutine (forker._asgi): one thread, the worker's main one. The event loop
# watches the C loop's epoll descriptor (add_reader) and drains it with
# fk_loop_poll, which never waits; a timer runs the loop's ticks. Each request
# becomes an Exchange, answered from a task with fk_loop_respond, fk_loop_send
# and fk_loop_send_file on this same thread, so no queue and no lock stand
# between the application and the writer. The Exchange holds the connection
# (py_owned) as a handler thread's HandlerJob does, until the response is
# complete or, once the task is over, released (exactly once).

cdef class Exchange:
    """One request answered by a task on the event loop: the hold on its
    connection, the head, a body in pieces or from a file, the client's leaving.
    Its calls return as the loop's (0 go on, 1 wait_writable() first, -1 the
    connection is gone); after the response or the client's leaving they do
    nothing and return -1."""

    def __repr__(self):
        return (f"<Exchange {self.request!r} started={self.started} complete={self.complete} "
                f"closed={self.closed}>")

    cdef bint _mine(self):
        """Whether the connection still holds the request this answers."""
        cdef fk_conn *c = self.conn
        return (c != NULL and not self.complete and c.generation == self.generation
                and c.request_id == self.request_id and c.py_owned)

    cdef int _settle(self, int rc, bint last) except -2:
        """After a call into the loop: the response is over when the loop is done
        with it (the request ended, or the loop gave up its hold); when the
        connection is gone but still held, FK_EV_CLOSED follows."""
        cdef fk_conn *c = self.conn
        if (last and rc >= 0) or not c.py_owned or c.request_id != self.request_id:
            self._completed(rc >= 0)
        self.engine._schedule_flush()
        return rc

    cdef void _completed(self, bint logged):
        """The response is done with (sent, or given up): the connection is no
        longer this exchange's."""
        cdef Engine engine = self.engine
        if self.complete:
            return
        self.complete = True
        if self.conn != NULL:
            item = engine.exchanges.get(self.conn.index)
            if item is self:
                del engine.exchanges[self.conn.index]
        self.conn = NULL
        self._close_file()
        self._wake()
        if logged and engine.access_log is not None and self.status:
            engine._log(self.request, self.status, self.sent, self.started_at)

    cdef void _wake(self):
        if self.waiter is not None:
            if not self.waiter.done():
                self.waiter.set_result(None)
            self.waiter = None
        if self.on_close is not None and not self.on_close.done():
            self.on_close.set_result(None)
        self._wake_message()
        self._wake_body()

    cdef void _wake_body(self):
        if self.on_body is not None:
            if not self.on_body.done():
                self.on_body.set_result(None)
            self.on_body = None

    cdef void _wake_message(self):
        if self.on_message is not None:
            if not self.on_message.done():
                self.on_message.set_result(None)
            self.on_message = None

    cdef void _close_file(self):
        if self.file is not None:
            close_body(self.file)
            self.file = None

    cdef void _end_request_body(self):
        """Before the response ends: the request's streamed body is read no
        more, and what the access log reads is copied off the slot."""
        self.request._end_body()
        if self.engine.access_log is not None:
            self.request._detach()

    cdef int respond(self, ResponsePlan plan) except -2:
        """Sends plan's head, and its body when it is whole (which ends the
        response); a streamed body follows through send(), a file's through
        send_file()."""
        cdef Engine engine = self.engine
        cdef int rc
        if not self._mine() or self.started:
            return -1
        self.started = True
        self.status = plan.status
        engine._set_resp(plan.status, plan.reason, plan.fields, plan.flags, plan.length)
        if plan.body is not None:
            self._end_request_body()
            self.sent = plan_sent(plan, self.request)
            rc = engine._respond_whole(self.conn, plan.body)
            return self._settle(rc, True)
        rc = fk_loop_respond(engine.loop, self.conn, &engine.resp, NULL, 0, 0)
        return self._settle(rc, False)

    cdef int send(self, bytes data, bint last) except -2:
        """A piece of the body respond() announced; last ends the response."""
        cdef int rc
        if not self._mine() or not self.started or self.file is not None:
            return -1
        if last:
            self._end_request_body()
        self.sent += PyBytes_GET_SIZE(data)
        rc = fk_loop_send(self.engine.loop, self.conn, PyBytes_AS_STRING(data),
                          PyBytes_GET_SIZE(data), last)
        return self._settle(rc, last)

    cdef int send_file(self, ResponsePlan plan, object fileobj) except -2:
        """Answers with plan's head, then the file plan names (sendfile(2));
        fileobj is closed when it is sent or the client leaves. Returns 0 when
        under way (the engine ends the response), 2 when done at once, -1 when
        the connection is gone."""
        cdef Engine engine = self.engine
        cdef int rc
        self.file = fileobj
        rc = self.respond(plan)
        if rc < 0 or self.complete:
            self._close_file()
            return -1
        self.sent = plan.length
        self.request._end_body()  # the file is the answer: the body is read no more
        rc = fk_loop_send_file(engine.loop, self.conn, plan.file_fd, plan.file_offset, plan.length)
        if rc == 0:
            engine._schedule_flush()
            return 0
        if rc == 2:
            self.sent = 0
        self._settle(rc, rc == 2)
        self._close_file()
        return rc

    cdef void abort(self):
        """Gives up the response: the connection is closed, once what was
        queued for it went out (as far as the socket takes it)."""
        if not self._mine():
            return
        try:
            async_drain(self.engine, 0)  # which may find the client gone, and end it
        except Exception:
            log.exception("error while flushing an aborted response")
        if self._mine():
            self.request._end_body()
            fk_loop_release(self.engine.loop, self.conn)
            self._completed(False)
            self.engine._schedule_flush()

    cdef void finish(self):
        """The task answering is over: a response it did not complete is given
        up (a file under way is the engine's to end); a connection the client
        left is released now; a websocket still open is closed (1000 unless
        the application closed it), and released once the client answered
        (FK_EV_CLOSED)."""
        self.task_done = True
        if self.complete:
            return
        if self.closed:
            self.request._end_body()
            fk_loop_release(self.engine.loop, self.conn)
            self._completed(False)
        elif self.ws:
            if self._mine():
                fk_loop_ws_close(self.engine.loop, self.conn, 1000, NULL, 0)
                self.engine._schedule_flush()
        elif self.file is None:
            self.abort()

    # -- websockets: the connection after its 101 (csrc/fk_loop_ws.c) --

    cdef int ws_accept(self, bytes head, bint deflate) except -2:
        """Sends head (the 101) and makes the connection a websocket, which
        this exchange holds until the connection closes; deflate: head
        accepted permessage-deflate (RSV1 marks a compressed message)."""
        cdef Engine engine = self.engine
        cdef int rc
        if not self._mine() or self.started:
            return -1
        self.started = True
        self.status = 101
        self.sent = 0
        self._end_request_body()
        self.ws = True
        rc = fk_loop_ws_accept(engine.loop, self.conn, PyBytes_AS_STRING(head),
                               PyBytes_GET_SIZE(head), deflate)
        engine._schedule_flush()
        if engine.access_log is not None:
            engine._log(self.request, 101, 0, self.started_at)
        return rc

    cdef object ws_take(self):
        """The client's message the loop holds, as (opcode, bytes, compressed),
        taken (the loop reads on); None when none waits. A compressed message
        (permessage-deflate) is as it came: its inflated text is unchecked."""
        cdef fk_conn *c = self.conn
        if (not self.ws or c == NULL or c.generation != self.generation or c.ws == NULL
                or not c.ws.msg_ready):
            return None
        data = PyBytes_FromStringAndSize(c.in_.data + c.in_.off, <Py_ssize_t>c.ws.dec.msg_len)
        opcode = c.ws.dec.msg_opcode
        compressed = c.ws.dec.msg_compressed != 0
        fk_loop_ws_taken(self.engine.loop, c)
        self.engine._schedule_flush()
        return opcode, data, compressed

    cdef object ws_closing(self):
        """(code, reason) once the websocket is over for the application: the
        client's close frame, the loop's failing of the connection (1002,
        1007, 1009, 1011), or 1006 when the connection was lost; else None."""
        cdef fk_conn *c = self.conn
        if c == NULL or c.generation != self.generation or c.ws == NULL:
            return (1006, "") if (self.closed or self.complete) else None
        if c.ws.close_code != 0:
            reason = b""
            if c.ws.dec.ctl_len > 2:
                reason = PyBytes_FromStringAndSize(c.ws.dec.ctl + 2, c.ws.dec.ctl_len - 2)
            return c.ws.close_code, reason.decode("utf-8")
        if c.ws.fail_code != 0:
            return c.ws.fail_code, ""
        if self.closed:
            return 1006, ""
        return None

    cdef int ws_send(self, int opcode, bytes data, bint compressed=False) except -2:
        """A message (compressed: deflated, framed with RSV1); returns as
        send() (1: wait_writable() first)."""
        cdef int rc
        if not self.ws or not self._mine():
            return -1
        self.sent += PyBytes_GET_SIZE(data)
        rc = fk_loop_ws_send(self.engine.loop, self.conn, opcode, compressed,
                             PyBytes_AS_STRING(data), PyBytes_GET_SIZE(data))
        self.engine._schedule_flush()
        return rc

    cdef int ws_close(self, int code, bytes reason) except -2:
        """Our close frame: the loop closes the connection once the client
        answered it, or after a few seconds."""
        cdef int rc
        if not self.ws or not self._mine():
            return -1
        rc = fk_loop_ws_close(self.engine.loop, self.conn, code, PyBytes_AS_STRING(reason),
                              PyBytes_GET_SIZE(reason))
        self.engine._schedule_flush()
        return rc

    def wait_message(self):
        """A future resumed when the loop has news of the websocket: a
        message, its close, or the connection's loss."""
        fut = self.engine.aloop.create_future()
        if self.complete or self.closed:
            fut.set_result(None)
        else:
            if self.on_message is not None and not self.on_message.done():
                self.on_message.set_result(None)
            self.on_message = fut
        return fut

    def wait_body(self, int ms):
        """A future resumed when the loop has news of the request's streamed
        body (FK_EV_BODY), the client left, the response ended, or after ms
        (-1: no limit), when the next read finds the body timed out unless
        bytes came. The body's reads are this thread's and never wait
        (BodyStream.read_ready), so a receive cancelled here loses nothing."""
        fut = self.engine.aloop.create_future()
        if self.complete or self.closed:
            fut.set_result(None)
            return fut
        self._wake_body()
        self.on_body = fut
        if ms >= 0:
            timer = self.engine.aloop.call_later(ms / 1000.0 + 0.001, _resolve, fut)
            fut.add_done_callback(lambda _: timer.cancel())
        return fut

    def wait_writable(self):
        """A future resumed once the connection took what was held (after a call
        returned 1), the response ended, or the client left."""
        fut = self.engine.aloop.create_future()
        if self.complete or self.closed:
            fut.set_result(None)
        else:
            self.waiter = fut
        return fut

    def wait_closed(self):
        """A future resumed when the client leaves or the response is over."""
        if self.on_close is None:
            self.on_close = self.engine.aloop.create_future()
            if self.complete or self.closed:
                self.on_close.set_result(None)
        return self.on_close


def _resolve(fut):
    if not fut.done():
        fut.set_result(None)


async def _answer(Exchange ex, object awaitable):
    """The task of one request: the handler's coroutine, then the end of the
    exchange whatever happened."""
    try:
        await awaitable
    except BaseException:
        if not ex.closed:
            log.exception("error in handler for %s %s", ex.request.method, ex.request.target)
        if not ex.started:
            ex.respond(ERROR_PLAN)
    finally:
        ex.finish()


cdef object async_run(Engine engine, object aloop):
    """Engine.run_async: serves on aloop until the loop is done."""
    engine.aloop = aloop
    engine.exchanges = {}
    engine.done = aloop.create_future()
    fd = fk_loop_fd(engine.loop)
    aloop.add_reader(fd, engine._on_io)
    engine.tick_handle = aloop.call_later(fk_loop_tick_in(engine.loop) / 1000.0 + 0.001,
                                          engine._on_tick)
    try:
        async_drain(engine, 1)
        if not engine.done.done():
            aloop.run_until_complete(engine.done)
    finally:
        engine.finished = True
        aloop.remove_reader(fd)
        engine.tick_handle.cancel()
        tasks = [(<Exchange>ex).task for ex in engine.exchanges.values()
                 if (<Exchange>ex).task is not None and not (<Exchange>ex).task.done()]
        for task in tasks:
            task.cancel()
        if tasks:  # what a fast stop or the graceful timeout cut short
            import asyncio
            aloop.run_until_complete(asyncio.wait(tasks, timeout=1.0))
        for item in list(engine.exchanges.values()):
            (<Exchange>item)._close_file()
        engine.exchanges.clear()


cdef int async_drain(Engine engine, int io) except -1:
    """Takes the loop's events without waiting (with io, epoll is asked too,
    once: what it reports after that waits for the event loop's next turn, so
    that the tasks of the requests taken run before more are taken)."""
    cdef fk_event ev
    cdef int kind
    cdef fk_loop *loop = engine.loop
    while not engine.finished:
        if engine.stop_requested:
            fk_loop_stop(loop, 1 if engine.stop_requested == 1 else 0)
        kind = fk_loop_poll(loop, &ev, io)
        io = 0
        if engine.lent:
            engine._lent_done()
        if kind == 0:
            return 0
        if kind == FK_EV_REQUEST:
            async_start(engine, ev.conn)
        elif kind == FK_EV_WRITABLE:
            async_writable(engine, ev.conn)
        elif kind == FK_EV_CLOSED:
            async_closed(engine, ev.conn)
        elif kind == FK_EV_WS:
            async_ws(engine, ev.conn)
        elif kind == FK_EV_BODY:
            async_body(engine, ev.conn)
        elif kind == FK_EV_WAKE:
            PyErr_CheckSignals()
        elif kind == FK_EV_TICK:
            if engine.tick_callback is not None:
                engine.tick_callback()
            engine._tick_trim()
        elif kind == FK_EV_DONE:
            engine.finished = True
            if not engine.done.done():
                engine.done.set_result(None)
    return 0


cdef void async_start(Engine engine, fk_conn *c):
    cdef Exchange ex = Exchange.__new__(Exchange)
    cdef Request req = Request.__new__(Request)
    req._bind(engine, c)
    ex.engine = engine
    ex.conn = c
    ex.request = req
    ex.generation = c.generation
    ex.request_id = c.request_id
    if engine.access_log is not None:
        ex.started_at = monotonic()
    c.py_owned = 1  # the slot outlives a client that leaves while the task runs
    engine.exchanges[c.index] = ex
    try:
        ex.task = engine.aloop.create_task(_answer(ex, engine.app(req, ex)))
    except HANDLER_ERRORS as exc:
        ex.respond(failure_plan(exc, req))
        ex.finish()


cdef Exchange exchange_of(Engine engine, fk_conn *c):
    item = engine.exchanges.get(c.index)
    if item is None or (<Exchange>item).generation != c.generation:
        return None
    return <Exchange>item


cdef void async_writable(Engine engine, fk_conn *c):
    cdef Exchange ex = exchange_of(engine, c)
    if ex is None or ex.request_id != c.request_id:
        return
    ex._wake_body()  # FK_EV_WRITABLE may have superseded FK_EV_BODY
    if ex.file is not None:
        if c.file_left == 0:  # the loop sent the whole file
            ex._close_file()
            ex.send(b"", 1)
        return
    if ex.waiter is not None:
        if not ex.waiter.done():
            ex.waiter.set_result(None)
        ex.waiter = None


cdef void async_body(Engine engine, fk_conn *c):
    """The request's streamed body has news (bytes, its end, an error); it
    may have superseded FK_EV_WRITABLE, which is acted on as well when out
    drained."""
    cdef Exchange ex = exchange_of(engine, c)
    if ex is None or ex.request_id != c.request_id:
        return
    if ex.file is not None or not c.watermark:
        async_writable(engine, c)
    else:
        ex._wake_body()


cdef void async_ws(Engine engine, fk_conn *c):
    """A websocket's message or close came; a send waiting for the socket may
    go on when out drained (FK_EV_WS supersedes FK_EV_WRITABLE)."""
    cdef Exchange ex = exchange_of(engine, c)
    if ex is None:
        return
    ex._wake_message()
    if not c.watermark and ex.waiter is not None:
        if not ex.waiter.done():
            ex.waiter.set_result(None)
        ex.waiter = None


cdef void async_closed(Engine engine, fk_conn *c):
    cdef Exchange ex = exchange_of(engine, c)
    if ex is None:
        fk_loop_release(engine.loop, c)
        return
    ex.closed = True
    ex._close_file()
    ex._wake()
    if ex.task_done:  # nothing will call finish(): release now
        ex.task_done = False
        ex.finish()
    elif not ex.ws:
        # Given back now, not when the task ends, so that tasks that ignore
        # the client's leaving cannot keep the worker's slots. No other thread
        # can be in the slot: the body is read on this one (body_events).
        ex.request._end_body()
        fk_loop_release(engine.loop, c)
        ex._completed(False)
