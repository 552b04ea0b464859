# Included by forker/_worker.pyx (declarations in forker/_worker.pxd).
#
# The handler-thread pool (threads > 1): a request handed to a thread as
# a HandlerJob, what the thread posts back (the plan, the chunks of a streamed body, its
# end), and the busy mark of the shared worker slot that the master's timeout
# reads. Functions of the Engine whose state they use; they run on the loop's
# thread, but for _handler_thread, pool_feed and pool_post.

cdef class HandlerJob:
    """A request handed to a handler thread, and what came back of it."""


# kinds of completions posted by handler threads
cdef enum:
    DONE_PLAN = 0   # the answer (complete, or the head of a streamed body)
    DONE_CHUNK = 1  # a piece of a streamed body
    DONE_END = 2    # the streamed body ended
    DONE_ABORT = 3  # the streamed body failed: close the connection

STREAM_WINDOW = 8


def _semaphore(int n):
    import threading
    return threading.Semaphore(n)


cdef void pool_start(Engine engine):
    import collections
    import threading
    from _queue import SimpleQueue  # the C type itself: module queue costs 90 KiB
    # One malloc arena for the process: glibc gives each thread an arena of
    # its own otherwise, and malloc_trim cannot shrink those arenas' tops, so
    # a burst of uploads read by handler threads stayed resident.
    mallopt(M_ARENA_MAX, 1)
    engine.job_queue = SimpleQueue()
    engine.completions = collections.deque()
    engine.threads_list = []
    for i in range(engine.threads):
        thread = threading.Thread(target=_handler_thread, args=(engine,),
                                  name=f"forker-handler-{i}", daemon=True)
        thread.start()
        engine.threads_list.append(thread)


cdef void pool_stop(Engine engine):
    if not engine.threads_list:
        return
    for _ in engine.threads_list:
        engine.job_queue.put(None)
    for thread in engine.threads_list:
        thread.join(0.1)
        if thread.is_alive():
            engine.threads_left = True
    engine.threads_list = []


cdef void pool_submit(Engine engine, fk_conn *c):
    cdef HandlerJob job = HandlerJob()
    cdef Request req = Request.__new__(Request)
    req._bind(engine, c)
    job.conn = c
    job.req = req
    if engine.access_log is not None:
        job.started = monotonic()
    c.py_owned = 1  # the slot outlives a client that leaves while the thread runs
    job.started_ms = fk_now_ms()
    engine.jobs[c.index] = job
    if len(engine.jobs) == 1:
        pool_mark_busy(engine)
    engine.job_queue.put(job)


cdef void pool_mark_busy(Engine engine):
    """Threads: the shared worker slot shows the oldest handler call still running
    without progress (since when, and which request), so that the master's
    timeout catches a stuck thread although the loop itself keeps turning.
    A call receiving its request body counts from the last bytes received,
    one streaming its response from the last piece it gave: a slow but
    steady upload, a stream of events, are not stuck handlers; nor is one
    waiting for its client to read (paused: the loop's write timeout is the
    client's)."""
    cdef HandlerJob oldest = None
    cdef HandlerJob job
    cdef uint64_t since, oldest_since = 0
    cdef bytes text
    cdef char *dest
    if engine.slot == NULL:
        return
    for item in engine.jobs.values():
        job = <HandlerJob>item
        if job.paused:
            continue
        since = job.started_ms if job.started_ms > job.progress_ms else job.progress_ms
        stream = job.req._stream
        if stream is not None and (<BodyStream>stream).progress_ms > since:
            since = (<BodyStream>stream).progress_ms
        if oldest is None or since < oldest_since:
            oldest, oldest_since = job, since
    if oldest is None:
        engine.slot[FK_SLOT_BUSY_SINCE] = 0
        return
    if engine.slot[FK_SLOT_BUSY_SINCE] == oldest_since:
        return
    try:
        text = f"{oldest.req.method} {oldest.req.target}".encode("latin-1")
    except Exception:
        text = b""
    text = text[:FK_SLOT_TEXT_SIZE - 1]
    dest = <char *>&engine.slot[FK_SLOT_TEXT]
    memset(dest, 0, FK_SLOT_TEXT_SIZE)
    memcpy(dest, PyBytes_AS_STRING(text), PyBytes_GET_SIZE(text))
    engine.slot[FK_SLOT_BUSY_SINCE] = oldest_since


def _handler_thread(Engine engine):
    """A handler thread: runs handlers and posts what they return. The last
    thing it posts for a job (the answer, or the end of a streamed body)
    follows the end of the request's body (Request._end_body): the loop
    may reuse the connection's input as soon as it has that post."""
    cdef HandlerJob job
    cdef ResponsePlan plan
    cdef Request req
    while True:
        item = engine.job_queue.get()
        if item is None:
            return
        job = <HandlerJob>item
        req = job.req
        if job.cancelled:  # the client left before a thread was free for it
            req._end_body()
            pool_post(engine, DONE_ABORT, job, None)
            item = job = req = None
            continue
        result = None
        try:
            result = engine.app(req)
            plan = make_plan(result, req._minor, req._is_head())
        except HANDLER_ERRORS as exc:
            close_body(result)
            plan = failure_plan(exc, req)
        result = None
        req._detach_if_needed(engine.access_log is not None, 2)  # job.req and req
        if plan.source is not None and plan.file_fd < 0:
            job.window = _semaphore(STREAM_WINDOW)  # before the plan is posted
            pool_post(engine, DONE_PLAN, job, plan)
            pool_feed(engine, job, plan.source)
        else:
            req._end_body()
            pool_post(engine, DONE_PLAN, job, plan)
        # Not held while waiting for the next job: a request's body (1 MB
        # for an upload) would stay alive per idle thread until then.
        item = job = req = plan = None


cdef void pool_feed(Engine engine, HandlerJob job, object source):
    """Iterates a streamed body on the handler thread, a window at a time,
    then closes it and ends the request's body before the last post."""
    cdef int last = DONE_END
    try:
        for item in source:
            chunk = as_bytes(item)
            job.window.acquire()
            if job.cancelled:
                break
            pool_post(engine, DONE_CHUNK, job, chunk)
    except HANDLER_ERRORS:
        log.exception("error while streaming a response body")
        last = DONE_ABORT
    close_body(source)
    job.req._end_body()
    pool_post(engine, last, job, None)


cdef void pool_post(Engine engine, int kind, HandlerJob job, object payload):
    engine.completions.append((kind, job, payload))
    if not engine.notified:
        engine.notified = True
        os.eventfd_write(engine.notify_fd, 1)


cdef void pool_collect(Engine engine):
    """Delivers what handler threads finished (FK_EV_NOTIFY)."""
    cdef HandlerJob job
    cdef ResponsePlan plan
    cdef int kind, rc
    cdef fk_conn *c
    cdef bytes chunk
    engine.notified = False
    while engine.completions:
        kind, item, payload = engine.completions.popleft()
        job = <HandlerJob>item
        c = job.conn
        plan = <ResponsePlan>payload if kind == DONE_PLAN else None
        final = kind != DONE_CHUNK and not (plan is not None and plan.source is not None
                                            and plan.file_fd < 0)
        if job.cancelled:
            if final:
                engine.jobs.pop(c.index, None)
                fk_loop_release(engine.loop, c)
            continue
        if kind == DONE_PLAN:
            job.status = (<ResponsePlan>payload).status
            stream = engine._deliver(c, <ResponsePlan>payload, job, job.req, job.started)
            if final:
                engine.jobs.pop(c.index, None)
                if engine.access_log is not None and stream is None:
                    engine._log(job.req, job.status, plan_sent(<ResponsePlan>payload, job.req),
                              job.started)
        elif kind == DONE_CHUNK:
            chunk = <bytes>payload
            job.sent += PyBytes_GET_SIZE(chunk)
            job.progress_ms = fk_now_ms()
            rc = fk_loop_send(engine.loop, c, PyBytes_AS_STRING(chunk), PyBytes_GET_SIZE(chunk), 0)
            if rc == 1:
                job.paused = True
            else:
                job.window.release()
        elif kind == DONE_END:
            engine.jobs.pop(c.index, None)
            fk_loop_send(engine.loop, c, NULL, 0, 1)
            if engine.access_log is not None:
                engine._log(job.req, job.status, job.sent, job.started)
        else:
            engine.jobs.pop(c.index, None)
            fk_loop_release(engine.loop, c)
    pool_mark_busy(engine)
