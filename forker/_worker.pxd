# The classes of forker._worker (_worker.pyx and the engine/*.pxi it
# includes), declared for the module itself and for the .pyx files that cimport
# them: forker._wsgi reads a Request and makes a Reply through these fields and
# methods, without Python attribute lookups. Which part may touch what is in
# docs/ARCHITECTURE.md ("The worker's Python side").
from libc.stdint cimport int64_t, uint64_t

from forker._csrc cimport *

cdef class Engine
cdef class Request
cdef class BodyStream
cdef class ResponsePlan
cdef class ResponseStream
cdef class HandlerJob
cdef class Exchange


# -- the request side (engine/request.pxi) ---------------------------------------

cdef class Request:
    cdef fk_conn *_conn
    cdef Engine _engine
    cdef object _method, _path, _query, _target, _headers, _body, _host
    cdef object _remote_addr, _remote_port
    cdef BodyStream _stream
    cdef int _minor, _flags, _listener
    cdef unsigned int _request_id
    cdef uint64_t _queue_us
    cdef void _bind(self, Engine engine, fk_conn *conn)
    cdef fk_conn *_live(self) except NULL
    cdef bint _is_head(self)
    cdef void _end_body(self)
    cdef void _detach_if_needed(self, bint always, Py_ssize_t own_refs)
    cdef void _detach(self)
    cdef object _get_method(self)
    cdef object _get_target(self)
    cdef object _get_path(self)
    cdef object _get_query(self)
    cdef object _get_host(self)
    cdef list _fields(self, bint flat)
    cdef object _get_body(self)
    cdef BodyStream _get_stream(self)
    cdef void _peer(self)
    cdef str _scheme(self)
    cdef list _flat_fields(self)


cdef class BodyStream:
    cdef Engine _engine
    cdef fk_conn *_conn
    cdef unsigned int _generation
    cdef unsigned int _request_id
    cdef object _lock     # held during a read, and by end()
    cdef bint _ended
    cdef bytes _ahead     # bytes readline took past its line
    cdef bint _touched    # read from: Request.body can no longer be whole
    cdef uint64_t progress_ms  # CLOCK_MONOTONIC ms of the last bytes received
    cdef readonly object length  # the Content-Length; None for a chunked body
    cdef fk_conn *_live(self) except NULL
    cdef void end(self)
    cdef Py_ssize_t _read_into(self, char *dst, Py_ssize_t size) except -1
    cdef Py_ssize_t _unread(self)
    cdef bytes _take_ahead(self, Py_ssize_t size)
    cdef bytes _read_some(self, Py_ssize_t size)
    cdef bytes _read_exactly(self, Py_ssize_t size)
    cdef object read_ready(self, Py_ssize_t size)
    cdef int wait_ms(self) except -2


# -- the response side (engine/response.pxi) --------------------------------------

cdef class Reply:
    cdef readonly object body
    cdef readonly int status
    cdef readonly list headers
    cdef readonly object reason


cdef class ResponsePlan:
    cdef int status
    cdef bytes reason
    cdef bytes fields
    cdef unsigned flags
    cdef int64_t length
    cdef bytes body      # the whole body, or None when streamed
    cdef object source   # the iterable a streamed body comes from
    cdef int file_fd     # >= 0: source is a regular file sent with sendfile(2)
    cdef int64_t file_offset


cdef class ResponseStream:
    cdef object iterator
    cdef object source  # the object whose close() we owe (PEP 3333)
    cdef unsigned int generation  # of the connection, and
    cdef unsigned int request_id  # of the request on it, that this answers
    cdef Request req    # whose streamed body ends with the response
    cdef bint logged    # the access log line is written when the body ends
    cdef bint is_file   # sent by the loop with sendfile(2)
    cdef int status
    cdef Py_ssize_t sent
    cdef double started
    cdef void close(self)


cdef bytes error_body(int status)


# -- handler threads (engine/threads.pxi) --------------------------------------------

cdef class HandlerJob:
    cdef fk_conn *conn
    cdef Request req
    cdef bint cancelled  # the client went away; release the connection when the thread is done
    cdef Py_ssize_t sent
    cdef double started
    cdef int status
    cdef uint64_t started_ms  # when the loop handed it over (CLOCK_MONOTONIC ms)
    cdef uint64_t progress_ms # when its streamed body last gave a piece, or resumed; 0 never
    cdef bint paused     # the client's buffer is full: the window is held until writable
    cdef object window   # semaphore bounding the chunks in flight


# -- coroutine handlers on an asyncio event loop (engine/aio.pxi) ----------------------

cdef class Exchange:
    cdef Engine engine
    cdef fk_conn *conn       # NULL once the response is over
    cdef readonly Request request
    cdef unsigned int generation  # of the connection, and
    cdef unsigned int request_id  # of the request on it, that this answers
    cdef readonly bint closed     # the client left (FK_EV_CLOSED)
    cdef readonly bint complete   # the response is over: sent, or given up
    cdef readonly bint started    # the head was handed to the loop
    cdef bint task_done
    cdef object task
    cdef object waiter       # future of wait_writable()
    cdef object on_close     # future of wait_closed()
    cdef object file         # sent with sendfile(2), closed once sent
    cdef readonly bint ws    # the connection became a websocket (ws_accept)
    cdef object on_message   # future of wait_message()
    cdef object on_body      # future of wait_body()
    cdef int status
    cdef Py_ssize_t sent
    cdef double started_at
    cdef bint _mine(self)
    cdef int _settle(self, int rc, bint last) except -2
    cdef void _completed(self, bint logged)
    cdef void _wake(self)
    cdef void _wake_message(self)
    cdef void _wake_body(self)
    cdef void _close_file(self)
    cdef void _end_request_body(self)
    cdef int respond(self, ResponsePlan plan) except -2
    cdef int send(self, bytes data, bint last) except -2
    cdef int send_file(self, ResponsePlan plan, object fileobj) except -2
    cdef void abort(self)
    cdef void finish(self)
    cdef int ws_accept(self, bytes head, bint deflate) except -2
    cdef object ws_take(self)
    cdef object ws_closing(self)
    cdef int ws_send(self, int opcode, bytes data, bint compressed=*) except -2
    cdef int ws_close(self, int code, bytes reason) except -2


cdef ResponsePlan make_plan(object result, int minor_version, bint head)
cdef ResponsePlan failure_plan(object exc, Request req)
cdef ResponsePlan server_error_plan()


# -- the loop's configuration (engine/loopconfig.pxi) --------------------------------

cdef class LoopConfig:
    cdef fk_loop_config cfg
    cdef list keep


# -- the engine (engine/engine.pxi) --------------------------------------------------

cdef class Engine:
    cdef fk_loop *loop
    cdef fk_tls_ctx *tls_ctx
    cdef list tls_keep     # what tls_ctx needs alive (a Python ssl.SSLContext)
    cdef object app
    cdef object access_log
    cdef LoopConfig config  # what the loop's configuration points to, kept while it runs
    cdef readonly list listen_addrs
    cdef readonly list listen_schemes  # "http" or "https", per listener
    cdef dict streams      # connection index -> ResponseStream (loop-thread streaming)
    cdef dict peers        # connection index -> (generation, remote address, port)
    cdef list header_names # NAME_CACHE_SIZE header names seen lately (header_name)
    cdef dict jobs         # connection index -> HandlerJob (handler threads)
    cdef dict lent         # ticket -> bytes the loop sends from their own memory
    cdef public int stop_requested  # 1 graceful, 2 fast; set by signal handlers
    cdef fk_response resp
    cdef object tick_callback
    cdef int threads
    cdef int notify_fd
    cdef object job_queue, completions, threads_list
    cdef bint threads_left  # handler threads still ran when the loop stopped
    cdef bint notified
    cdef uint64_t *slot
    cdef object slot_view  # keeps the shared memory the slot points into
    cdef object aloop      # the asyncio event loop of run_async(), else None
    cdef dict exchanges    # connection index -> Exchange (run_async)
    cdef object done       # future: the loop is done (run_async)
    cdef object tick_handle
    cdef bint finished     # the loop reported FK_EV_DONE (run_async)
    cdef bint flush_pending  # a drain without io is scheduled (run_async)
    cdef uint64_t served_at_tick  # requests served as of the last tick
    cdef bint trim_due     # requests were served since the C heap was last trimmed
    cdef void _tick_trim(self)
    cdef void _handle(self, fk_conn *c)
    cdef void _log(self, Request req, int status, Py_ssize_t sent, double started)
    cdef void _set_resp(self, int status, bytes reason, bytes fields, unsigned flags,
                        int64_t length)
    cdef object _deliver(self, fk_conn *c, ResponsePlan plan, HandlerJob job, Request req,
                         double started)
    cdef object _send_file(self, fk_conn *c, ResponsePlan plan, ResponseStream stream)
    cdef int _respond_whole(self, fk_conn *c, bytes body)
    cdef void _lent_done(self)
    cdef ResponseStream _stream_of(self, fk_conn *c)
    cdef void _end_stream(self, fk_conn *c, ResponseStream stream)
    cdef void _pump(self, fk_conn *c, ResponseStream stream)
    cdef void _writable(self, fk_conn *c)
    cdef void _closed(self, fk_conn *c)
    cdef void _schedule_flush(self)
