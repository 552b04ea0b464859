# Included by forker/_worker.pyx (declarations in forker/_worker.pxd).
#
# The Engine: one worker's loop. It drives fk_loop_next(), builds a
# Request for each request the loop hands over, calls the handler (here, or
# through the thread pool of threads.pxi) and hands the answer to the loop.

cdef Py_ssize_t BODY_BUFFER_SIZE = 64 << 10  # default body_buffer_size with threads or ASGI


cdef object max_requests_of(config):
    """max_requests, plus this worker's share of max_requests_jitter (0: no limit)."""
    limit = config.max_requests
    if limit > 0 and config.max_requests_jitter > 0:
        # os.urandom, not the random module, which would add 0.1 MiB to every worker
        limit += int.from_bytes(os.urandom(4), "little") % (config.max_requests_jitter + 1)
    return limit


cdef class Engine:
    """One worker's loop. run() returns when the loop stopped."""


    def __cinit__(self):
        self.loop = NULL
        self.peers = {}
        self.lent = {}
        self.header_names = [None] * NAME_CACHE_SIZE
        self.tls_ctx = NULL
        self.tls_keep = []
        self.notify_fd = -1

    def __init__(self, app, config, listeners, slot=None, int wake_fd=-1, int parent_pid=0,
                 access_log=None, tick=None, schemes=None, constant_body=None,
                 bytes ticket_keys=None, ssl_context=None, stats=None, bint asynchronous=False):
        """config: the forker.config.Config, each option read by its name
        (a Config has every option: no default here stands in for a missing
        one); the other arguments hold what no option does, the worker's own.
        constant_body: the bytes app always answers (the built-in greeting),
        which the loop then answers itself when nothing is logged. ticket_keys
        and ssl_context: what an https listener's TLS context is made with
        (forker.tls.ticket_keys(), the checked ssl.SSLContext of the option,
        or None for the configuration's certificate files). stats: this
        worker's statsd area (forker.shm.StatsTable.view), None when statsd
        is off. asynchronous: the engine is served with run_async()
        (app(request, exchange) returns a coroutine); Python then keeps the
        slot's busy mark (never set: the heartbeat tells a blocked event loop)
        and streamed bodies are read from other threads, as with handler
        threads."""
        cdef unsigned char[:] view
        cdef fk_net *nets
        cdef int threads = 1 if asynchronous else config.threads
        self.app = app
        self.access_log = access_log
        self.tick_callback = tick
        self.streams = {}
        self.jobs = {}
        self.threads = threads
        # What the options table does not give fk_loop_config itself (loop_config()).
        engine = {"max_requests": max_requests_of(config), "wake_fd": wake_fd,
                  "parent_pid": parent_pid,
                  "threaded": threads > 1 or asynchronous, "notify_fd": -1, "slot": None,
                  "close_on_fin": asynchronous, "body_events": asynchronous,
                  "stats": None,
                  "constant_body": None, "proxy_allow": None, "proxy_allow_len": 0,
                  "shared_listeners": not config.reuse_port}
        if config.body_buffer_size is None:  # stream large bodies only where a thread may wait
            engine["body_buffer_size"] = BODY_BUFFER_SIZE if threads > 1 or asynchronous else 0
        if slot is not None:
            view = slot
            if view.shape[0] < FK_SLOT_BYTES:
                raise ValueError(f"slot must hold at least {FK_SLOT_BYTES} bytes")
            self.slot = <uint64_t *>&view[0]
            self.slot_view = slot
            engine["slot"] = slot
        if stats is not None:
            view = stats
            if view.shape[0] < FK_STATS_BYTES:
                raise ValueError(f"stats must hold at least {FK_STATS_BYTES} bytes")
            engine["stats"] = stats  # kept by the LoopConfig
        if constant_body is not None and access_log is None:
            # A constant answer needs no Python call: the loop gives it itself,
            # as nginx does a `return` (nothing to log, no handler to time).
            engine["constant_body"] = constant_body
        if config.proxy_protocol:
            allowed = proxy_networks(config.forwarded_allow_ips)
            packed = bytearray(sizeof(fk_net) * (len(allowed) or 1))
            nets = <fk_net *><char *>packed
            for i, (family, bits, address) in enumerate(allowed):
                nets[i].family = family
                nets[i].bits = bits
                memcpy(nets[i].addr, <const char *>address, len(address))
            engine["proxy_allow"] = packed
            engine["proxy_allow_len"] = len(allowed)
        if threads > 1:
            self.notify_fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
            engine["notify_fd"] = self.notify_fd
        self.config = loop_config(config, engine)
        # Freed memory stays in the heap while requests come (glibc would give
        # the heap's top back, then fault it in again, on every large request):
        # the thresholds glibc's own adaptation ends at, fixed from the start.
        # _tick_trim gives it all back once the worker is quiet.
        mallopt(M_MMAP_THRESHOLD, 32 << 20)
        mallopt(M_TRIM_THRESHOLD, 64 << 20)
        self.loop = fk_loop_create(&self.config.cfg)
        if self.loop == NULL:
            raise MemoryError("cannot create the event loop")
        self.listen_addrs = []
        self.listen_schemes = []
        listeners = list(listeners)
        schemes = list(schemes) if schemes is not None else ["http"] * len(listeners)
        if len(schemes) != len(listeners) or not set(schemes) <= {"http", "https"}:
            raise ValueError(f"schemes: expected 'http' or 'https' for each of the "
                             f"{len(listeners)} listeners, got {schemes!r}")
        if "https" in schemes:
            self.tls_ctx = tls_context(config, ticket_keys, ssl_context, self.tls_keep)
        for sock, scheme in zip(listeners, schemes):
            if scheme == "https":
                rc = fk_loop_add_tls_listener(self.loop, sock.fileno(), self.tls_ctx)
            else:
                rc = fk_loop_add_listener(self.loop, sock.fileno())
            if rc < 0:
                raise EngineError(-rc, os.strerror(-rc))
            name = sock.getsockname()
            if isinstance(name, tuple):
                self.listen_addrs.append((name[0], name[1]))
            else:
                self.listen_addrs.append((name or "", 0))
            self.listen_schemes.append(scheme)

    def __dealloc__(self):
        if self.threads_left:
            # A handler thread that outlived the loop may still read a slot: the
            # memory goes with the process, which is exiting, rather than now.
            Py_INCREF(self.config)  # and so does what the loop's configuration points to
            return
        if self.loop != NULL:
            fk_loop_destroy(self.loop)
            self.loop = NULL
        if self.tls_ctx != NULL:  # after the loop: its connections used it
            fk_tls_ctx_destroy(self.tls_ctx)
            self.tls_ctx = NULL
        if self.notify_fd >= 0:
            os.close(self.notify_fd)
            self.notify_fd = -1

    @property
    def served(self):
        return fk_loop_served(self.loop)

    @property
    def open_connections(self):
        return fk_loop_open(self.loop)

    def loop_config(self):
        """The loop's own copy of its fk_loop_config, every field by name (for
        tests: text fields as bytes, address fields as integers)."""
        return loop_config_values(fk_loop_config_of(self.loop))

    def stop(self, graceful=True):
        """Asks the loop to stop (safe from a signal handler: only sets a flag,
        and under run_async wakes the event loop to look at it)."""
        self.stop_requested = max(self.stop_requested, 1 if graceful else 2)
        if self.aloop is not None and not self.finished:
            self.aloop.call_soon_threadsafe(self._on_flush)

    def run_async(self, aloop):
        """Serves with a coroutine handler on the asyncio event loop aloop, on this
        thread, until the loop stopped: handler(request, exchange) returns the
        awaitable that answers through the Exchange (engine/aio.pxi)."""
        if self.threads > 1:
            raise ValueError("run_async serves on one thread: threads must be 1")
        async_run(self, aloop)

    def _on_io(self):
        async_drain(self, 1)

    def _on_flush(self):
        self.flush_pending = False
        async_drain(self, 0)

    def _on_tick(self):
        async_drain(self, 1)
        if not self.finished:
            self.tick_handle = self.aloop.call_later(fk_loop_tick_in(self.loop) / 1000.0 + 0.001,
                                                     self._on_tick)

    cdef void _schedule_flush(self):
        """What the Exchanges queued is written at the event loop's next turn."""
        if not self.flush_pending and not self.finished:
            self.flush_pending = True
            self.aloop.call_soon(self._on_flush)

    def run(self):
        cdef fk_event ev
        cdef int kind
        cdef fk_loop *loop = self.loop
        if self.threads > 1:
            pool_start(self)
        try:
            while True:
                with nogil:
                    kind = fk_loop_next(loop, &ev)
                if self.lent:
                    self._lent_done()
                if kind == FK_EV_REQUEST:
                    if self.threads > 1:
                        pool_submit(self, ev.conn)
                    else:
                        self._handle(ev.conn)
                elif kind == FK_EV_NOTIFY:
                    pool_collect(self)
                elif kind == FK_EV_WRITABLE:
                    self._writable(ev.conn)
                elif kind == FK_EV_CLOSED:
                    self._closed(ev.conn)
                elif kind == FK_EV_WAKE:
                    PyErr_CheckSignals()
                elif kind == FK_EV_TICK:
                    if self.tick_callback is not None:
                        self.tick_callback()
                    if self.threads > 1:
                        pool_mark_busy(self)  # a body's progress moves busy_since on
                    self._tick_trim()
                elif kind == FK_EV_DONE:
                    break
                if self.stop_requested:
                    fk_loop_stop(loop, 1 if self.stop_requested == 1 else 0)
        finally:
            for stream in list(self.streams.values()):
                (<ResponseStream>stream).close()
            self.streams.clear()
            pool_stop(self)

    cdef void _tick_trim(self):
        """After a second without requests that followed some work, gives the C
        heap's free pages back (malloc_trim): the buffers of a burst of uploads or
        of many connections leave holes that glibc keeps resident otherwise. Never
        while requests keep coming: then those pages are about to be used again."""
        cdef uint64_t served = fk_loop_served(self.loop)
        if served != self.served_at_tick:
            self.served_at_tick = served
            self.trim_due = True
        elif self.trim_due:
            self.trim_due = False
            with nogil:
                malloc_trim(0)

    # ---- requests on the loop thread ----------------------------------------------

    cdef void _handle(self, fk_conn *c):
        cdef Request req = Request.__new__(Request)
        cdef ResponsePlan plan
        cdef bytes body
        cdef double started = 0.0
        req._bind(self, c)
        if self.access_log is not None:
            started = monotonic()
        try:
            result = self.app(req)
        except HANDLER_ERRORS as exc:
            plan = failure_plan(exc, req)
        else:
            if type(result) is bytes:  # the fast path: no ResponsePlan
                body = <bytes>result
                req._detach_if_needed(self.access_log is not None, 1)
                req._end_body()
                self._set_resp(200, None, None, 0,
                               PyBytes_GET_SIZE(body) if PyBytes_GET_SIZE(body) != 0
                               or not req._is_head() else FK_BODY_UNSTATED)
                self._respond_whole(c, body)
                if self.access_log is not None:
                    self._log(req, 200, 0 if req._is_head() else PyBytes_GET_SIZE(body), started)
                req._conn = NULL
                return
            try:
                plan = make_plan(result, c.req.minor_version, req._is_head())
            except HANDLER_ERRORS:
                log.exception("invalid response from handler for %s %s", req.method, req.target)
                close_body(result)
                plan = ERROR_PLAN
        req._detach_if_needed(self.access_log is not None, 1)
        stream = self._deliver(c, plan, None, req, started)
        if self.access_log is not None and stream is None:
            self._log(req, plan.status, plan_sent(plan, req), started)
        req._conn = NULL

    cdef void _log(self, Request req, int status, Py_ssize_t sent, double started):
        """Writes the access log line of a finished response."""
        try:
            self.access_log(req, status, sent, monotonic() - started)
        except Exception:
            log.exception("access log failed")

    cdef void _set_resp(self, int status, bytes reason, bytes fields, unsigned flags,
                        int64_t length):
        self.resp.status = status
        if reason is None:
            self.resp.reason = NULL
            self.resp.reason_len = 0
        else:
            self.resp.reason = PyBytes_AS_STRING(reason)
            self.resp.reason_len = PyBytes_GET_SIZE(reason)
        if fields is None:
            self.resp.fields = NULL
            self.resp.fields_len = 0
        else:
            self.resp.fields = PyBytes_AS_STRING(fields)
            self.resp.fields_len = PyBytes_GET_SIZE(fields)
        self.resp.content_length = length
        # a stop asked for while the handler ran (a signal on its thread) is
        # applied at the loop's next turn: this answer already says close
        self.resp.flags = flags | (FK_RESP_CLOSE if self.stop_requested else 0)

    cdef object _deliver(self, fk_conn *c, ResponsePlan plan, HandlerJob job, Request req,
                         double started):
        """Answers c with plan; a streamed body is pumped here (no job; the
        ResponseStream is returned, and writes the log line when it ends) or fed by
        the job's thread."""
        cdef ResponseStream stream
        self._set_resp(plan.status, plan.reason, plan.fields, plan.flags, plan.length)
        if plan.body is not None:
            req._end_body()
            self._respond_whole(c, plan.body)
            return None
        if fk_loop_respond(self.loop, c, &self.resp, NULL, 0, 0) < 0:
            if job is None:
                close_body(plan.source)
            return None
        if job is not None and plan.file_fd < 0:
            return None  # the thread sends the chunks
        stream = ResponseStream()
        stream.source = plan.source
        stream.generation = c.generation
        stream.request_id = c.request_id
        stream.req = req
        stream.logged = self.access_log is not None  # (a job's chunks are logged by _collect)
        stream.status = plan.status
        stream.started = started
        if plan.file_fd >= 0:
            return self._send_file(c, plan, stream)
        try:
            stream.iterator = iter(plan.source)
        except HANDLER_ERRORS:
            log.exception("response body is not iterable")
            stream.close()
            fk_loop_release(self.loop, c)
            return None
        self.streams[c.index] = stream
        self._pump(c, stream)
        return stream

    cdef int _respond_whole(self, fk_conn *c, bytes body):
        """Answers with body whole (self.resp set) and returns as
        fk_loop_respond() but never 2: the loop may send a large body from its
        own memory, which is then kept until the loop is done with it
        (_lent_done)."""
        cdef int rc = fk_loop_respond(self.loop, c, &self.resp, PyBytes_AS_STRING(body),
                                      PyBytes_GET_SIZE(body), FK_RESPOND_LEND)
        if rc != 2:
            return rc
        if c.lent_ticket == 0:
            return -1  # the connection closed at once
        self.lent[c.lent_ticket] = body
        return 0

    cdef void _lent_done(self):
        """Drops the bodies the loop no longer sends from."""
        cdef uint64_t tickets[64]
        cdef size_t i, n = 64
        while n == 64:
            n = fk_loop_lent_done(self.loop, tickets, 64)
            for i in range(n):
                del self.lent[tickets[i]]

    cdef object _send_file(self, fk_conn *c, ResponsePlan plan, ResponseStream stream):
        stream.is_file = True
        stream.sent = plan.length
        stream.req._end_body()  # the file is the answer: the body is read no more
        rc = fk_loop_send_file(self.loop, c, plan.file_fd, plan.file_offset, plan.length)
        if rc == 0:
            self.streams[c.index] = stream
            return stream
        stream.sent = 0
        stream.close()  # done at once (HEAD, empty) or the connection is gone
        return None

    cdef ResponseStream _stream_of(self, fk_conn *c):
        """The ResponseStream of c's current response, if Python streams it."""
        item = self.streams.get(c.index)
        if item is None:
            return None
        stream = <ResponseStream>item
        if stream.generation != c.generation or stream.request_id != c.request_id:
            return None
        return stream

    cdef void _end_stream(self, fk_conn *c, ResponseStream stream):
        """The body of c's streamed response was all sent: close its source,
        end the request, write the log line."""
        del self.streams[c.index]
        stream.close()
        fk_loop_send(self.loop, c, NULL, 0, 1)
        if stream.logged:
            self._log(stream.req, stream.status, stream.sent, stream.started)

    cdef void _pump(self, fk_conn *c, ResponseStream stream):
        """Sends chunks until the body ends or the client's buffer is full."""
        cdef int rc
        cdef bytes chunk
        while True:
            try:
                chunk = as_bytes(next(stream.iterator))
            except StopIteration:
                self._end_stream(c, stream)
                return
            except HANDLER_ERRORS:
                log.exception("error while streaming a response body")
                self.streams.pop(c.index, None)
                stream.close()
                fk_loop_release(self.loop, c)  # the body cannot end cleanly: close
                return
            stream.sent += PyBytes_GET_SIZE(chunk)
            rc = fk_loop_send(self.loop, c, PyBytes_AS_STRING(chunk), PyBytes_GET_SIZE(chunk), 0)
            if rc == 1:
                return  # resumed on FK_EV_WRITABLE
            if rc == 0:
                # out now, not once the iterable's next piece came: this thread
                # makes it, and may wait long for it (a slow generator, events);
                # a client gone is found here, and the iterable closed
                rc = fk_loop_flush(self.loop, c)
            if rc < 0:
                break  # closed: FK_EV_CLOSED follows, and finds no stream
        self.streams.pop(c.index, None)
        stream.close()
        if stream.logged:
            self._log(stream.req, stream.status, stream.sent, stream.started)

    cdef void _writable(self, fk_conn *c):
        cdef ResponseStream stream = self._stream_of(c)
        if stream is not None:
            if not stream.is_file:
                self._pump(c, stream)
            elif c.file_left == 0:  # the loop sent the whole file
                self._end_stream(c, stream)
            return
        job = self.jobs.get(c.index)
        if job is not None and (<HandlerJob>job).paused:
            (<HandlerJob>job).paused = False
            (<HandlerJob>job).progress_ms = fk_now_ms()  # the wait was the client's
            (<HandlerJob>job).window.release()
            pool_mark_busy(self)

    cdef void _closed(self, fk_conn *c):
        cdef ResponseStream stream = self._stream_of(c)
        if stream is not None:
            del self.streams[c.index]
            stream.close()
        job = self.jobs.get(c.index)
        if job is not None:
            # The thread may still read the request: the slot is released when
            # its last completion arrives.
            (<HandlerJob>job).cancelled = True
            if (<HandlerJob>job).window is not None:
                (<HandlerJob>job).window.release()  # unblock a thread feeding a stream
            return
        fk_loop_release(self.loop, c)


def proxy_networks(items):
    """The allow-list of the PROXY protocol, from forwarded_allow_ips: a list of
    (address family, prefix length, packed network address); '*' allows every
    IPv4 and IPv6 peer. Unix-socket peers are always allowed (by the loop)."""
    import ipaddress
    import socket

    nets = []
    for item in items:
        if item == "*":
            nets.append((socket.AF_INET, 0, bytes(4)))
            nets.append((socket.AF_INET6, 0, bytes(16)))
            continue
        net = ipaddress.ip_network(item, strict=False)
        family = socket.AF_INET if net.version == 4 else socket.AF_INET6
        nets.append((family, net.prefixlen, net.network_address.packed))
    return nets
