"""Websockets (RFC 6455) of ASGI applications served by `python -m forker`:
the `websockets` client library against Starlette and FastAPI endpoints, raw
sockets for what a well-behaved client never sends (unmasked frames, invalid
UTF-8, a client that vanishes), and uvicorn serving the same application as
the oracle for handshakes, messages and close codes."""

from __future__ import annotations

import json
import os
import shutil
import struct
import sys
import tempfile
import time
import zlib

import pytest
import requests
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect as ws_connect
from websockets.sync.client import unix_connect

sys.path.insert(0, os.path.dirname(__file__))

from harness import (APPS, ForkerProcess, ServerProcess, connect, read_until_close,  # noqa: E402
                     self_signed)

DEADLINE = 30.0  # bounds a wait for an event, never a measure
KEY = "dGhlIHNhbXBsZSBub25jZQ=="  # the example of RFC 6455 1.3
ACCEPT = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="  # its Sec-WebSocket-Accept (RFC 6455 1.3)


@pytest.fixture(scope="module", params=["uvloop", "asyncio"])
def server(request):
    with ForkerProcess("--loop", request.param, app="asgi_ws:app") as server:
        server.url = f"ws://127.0.0.1:{server.port}"
        server.http = f"http://127.0.0.1:{server.port}"
        yield server


def wait_for_event(http, text):
    """The application's record of a websocket's end, once it is there
    (polled: the application writes it when its task ends)."""
    deadline = time.monotonic() + DEADLINE
    while True:
        events = json.loads(requests.get(http + "/events", timeout=10).text)
        if any(text in event for event in events):
            return events
        assert time.monotonic() < deadline, f"{text!r} not in {events}"
        time.sleep(0.02)


def frame(opcode, payload, fin=True, mask=b"\x37\xfa\x21\x3d", rsv=0):
    """A client frame; mask None sends it unmasked."""
    head = bytes([(0x80 if fin else 0) | rsv | opcode])
    n = len(payload)
    bit = 0x80 if mask is not None else 0
    if n < 126:
        head += bytes([bit | n])
    elif n < 65536:
        head += bytes([bit | 126]) + struct.pack("!H", n)
    else:
        head += bytes([bit | 127]) + struct.pack("!Q", n)
    if mask is None:
        return head + payload
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def raw_open(port, path="/echo?name=raw"):
    """A websocket opened by hand on a plain socket, offering no extension."""
    return raw_open_offering(port, None, path)[0]


def read_frame(sock):
    """The next server frame: (opcode, payload); None at EOF."""
    def exactly(n):
        data = b""
        while len(data) < n:
            chunk = sock.recv(n - len(data))
            if not chunk:
                return None
            data += chunk
        return data
    head = exactly(2)
    if head is None:
        return None
    assert not head[1] & 0x80, "a server frame is not masked"
    n = head[1] & 0x7F
    if n == 126:
        n = struct.unpack("!H", exactly(2))[0]
    elif n == 127:
        n = struct.unpack("!Q", exactly(8))[0]
    return head[0] & 0x0F, exactly(n)


def close_code(payload):
    return struct.unpack("!H", payload[:2])[0]


def expect_failed(sock, code):
    """The server's close frame with code, then the end of the connection."""
    got = read_frame(sock)
    assert got is not None and got[0] == 0x8 and close_code(got[1]) == code, got
    rest, _ = read_until_close(sock)
    assert rest == b""


# -- messages -------------------------------------------------------------------------

def test_echo_text_and_bytes(server):
    with ws_connect(server.url + "/echo") as ws:
        ws.send("hello, wörld")
        assert ws.recv() == "hello, wörld"
        ws.send(b"\x00\x01\xff")
        assert ws.recv() == b"\x00\x01\xff"
        ws.send("")
        assert ws.recv() == ""


def test_a_one_mib_message_both_ways(server):
    data = os.urandom(1 << 20)
    with ws_connect(server.url + "/echo", max_size=2 << 20) as ws:
        ws.send(data)
        assert ws.recv() == data
        text = "é" * (1 << 19)
        ws.send(text)
        assert ws.recv() == text


def test_a_fragmented_message(server):
    with ws_connect(server.url + "/echo") as ws:
        ws.send(["frag", "mén", "ted"])  # the library sends one frame per piece
        assert ws.recv() == "fragménted"
        ws.send([b"a" * 70000, b"b", b"c" * 10])
        assert ws.recv() == b"a" * 70000 + b"b" + b"c" * 10


def test_fragments_split_inside_a_character_and_a_ping_between(server):
    sock = raw_open(server.port)
    text = "añb€c".encode()
    sock.sendall(frame(0x1, text[:2], fin=False) + frame(0x9, b"between") +
                 frame(0x0, text[2:6], fin=False) + frame(0x0, text[6:]))
    assert read_frame(sock) == (0xA, b"between")
    assert read_frame(sock) == (0x1, text)
    sock.sendall(frame(0x8, struct.pack("!H", 1000)))
    got = read_frame(sock)
    assert got[0] == 0x8 and close_code(got[1]) == 1000
    assert read_frame(sock) is None


def test_a_ping_is_answered(server):
    with ws_connect(server.url + "/echo") as ws:
        assert ws.ping(b"are you there").wait(DEADLINE)
        ws.send("still here")
        assert ws.recv() == "still here"


def test_subprotocol_scope_and_extra_header(server):
    with ws_connect(server.url + "/subprotocol?x=1", subprotocols=["chat.v1", "chat.v2"]) as ws:
        got = json.loads(ws.recv())
        assert ws.subprotocol == "chat.v2"
        assert ws.response.headers["x-extra"] == "yes"
    assert got == {"offered": ["chat.v1", "chat.v2"], "chosen": "chat.v2", "scheme": "ws",
                   "path": "/subprotocol", "query": "x=1", "type": "websocket",
                   "extensions": ["websocket.http.response"]}


def test_the_pushing_application_waits_for_a_slow_reader(server):
    n, size = 64, 65536  # 4 MiB, well past the loop's high-water mark
    with ws_connect(server.url + f"/push?n={n}&size={size}", max_size=size) as ws:
        for i in range(n):
            data = ws.recv()
            assert len(data) == size and int.from_bytes(data[:4], "big") == i
    wait_for_event(server.http, "push disconnect 1000")


# -- closing ---------------------------------------------------------------------------

def test_the_client_closes_with_a_code(server):
    with ws_connect(server.url + "/echo?name=client4002") as ws:
        ws.send("one")
        assert ws.recv() == "one"
        ws.close(4002, "done here")
    wait_for_event(server.http, "client4002 disconnect 4002 done here")


def test_the_application_closes_with_a_code(server):
    with ws_connect(server.url + "/server-close") as ws:
        assert ws.recv() == "bye soon"
        with pytest.raises(ConnectionClosed) as info:
            ws.recv()
    assert info.value.rcvd.code == 4000 and info.value.rcvd.reason == "server says bye"


def test_the_application_closes_when_asked(server):
    with ws_connect(server.url + "/echo?name=asked") as ws:
        ws.send("close please")
        with pytest.raises(ConnectionClosed) as info:
            ws.recv()
    assert info.value.rcvd.code == 4001 and info.value.rcvd.reason == "as you asked"
    wait_for_event(server.http, "asked closed 4001")


def test_an_application_that_returns_closes_1000_and_one_that_fails_1011(server):
    with ws_connect(server.url + "/returns") as ws:
        assert ws.recv() == "returning"
        with pytest.raises(ConnectionClosed) as info:
            ws.recv()
    assert info.value.rcvd.code == 1000
    with ws_connect(server.url + "/fails") as ws:
        with pytest.raises(ConnectionClosed) as info:
            ws.recv()
    assert info.value.rcvd.code == 1011


def test_a_client_that_vanishes_is_1006_to_the_application(server):
    sock = raw_open(server.port, "/echo?name=vanished")
    sock.sendall(frame(0x1, b"hi"))
    assert read_frame(sock) == (0x1, b"hi")
    sock.close()
    wait_for_event(server.http, "vanished disconnect 1006")


# -- handshakes the application refuses ---------------------------------------------------

def test_closing_before_accepting_is_403(server):
    with pytest.raises(InvalidStatus) as info:
        ws_connect(server.url + "/deny")
    assert info.value.response.status_code == 403


def test_the_denial_response_extension(server):
    with pytest.raises(InvalidStatus) as info:
        ws_connect(server.url + "/raw/x")
    response = info.value.response
    assert response.status_code == 401
    assert response.headers["x-denied"] == "yes" and response.body == b"not you"


@pytest.mark.parametrize("path", ["/bad-accept/x", "/bad-accept/x?catch", "/bad-denial/x"])
def test_a_handshake_answer_the_server_refuses_is_a_500(server, path):
    """websocket.accept (or a denial) with a field that would inject a line
    raises in send, and nothing of it goes out; the client then gets a 500,
    not a silent close, whether the application lets the error go or not."""
    with pytest.raises(InvalidStatus) as info:
        ws_connect(server.url + path)
    assert info.value.response.status_code == 500


@pytest.mark.parametrize("fields, status", [
    ({"Sec-WebSocket-Version": "8", "Sec-WebSocket-Key": KEY}, 426),
    ({"Sec-WebSocket-Version": "13"}, 400),
    ({"Sec-WebSocket-Version": "13", "Sec-WebSocket-Key": "c2hvcnQ="}, 400),
])
def test_a_bad_handshake_is_refused_without_the_application(server, fields, status):
    headers = {"Upgrade": "websocket", "Connection": "Upgrade", **fields}
    response = requests.get(server.http + "/echo?name=never", headers=headers, timeout=10)
    assert response.status_code == status
    if status == 426:
        assert response.headers["Sec-WebSocket-Version"] == "13"
    events = json.loads(requests.get(server.http + "/events", timeout=10).text)
    assert not any("never" in event for event in events)


# -- what the loop refuses ---------------------------------------------------------------

def test_an_unmasked_frame_is_1002(server):
    sock = raw_open(server.port, "/echo?name=unmasked")
    sock.sendall(frame(0x1, b"not masked", mask=None))
    expect_failed(sock, 1002)
    wait_for_event(server.http, "unmasked disconnect 1002")


@pytest.mark.parametrize("data", [
    frame(0x1, b"x", rsv=0x40),                 # RSV1 without an extension
    frame(0x3, b"x"),                           # a reserved opcode
    frame(0x9, b"x" * 126),                     # a control frame over 125 bytes
    frame(0x9, b"x", fin=False),                # a fragmented control frame
    frame(0x0, b"x"),                           # a continuation of nothing
    frame(0x1, b"a", fin=False) + frame(0x1, b"b"),  # a message inside a message
    frame(0x8, b"\x03"),                        # a close payload of one byte
    frame(0x8, struct.pack("!H", 1005)),        # a close code never sent
    b"\x82\xff\x80" + b"\x00" * 7 + b"abcd",     # a 64-bit length with its top bit set
])
def test_protocol_errors_are_1002(server, data):
    sock = raw_open(server.port)
    sock.sendall(data)
    expect_failed(sock, 1002)


@pytest.mark.parametrize("data", [
    frame(0x1, b"\xff"),
    frame(0x1, b"\xed\xa0\x80"),                 # a surrogate
    frame(0x1, b"ok \xe2\x82", fin=True),        # ends inside a character
    frame(0x8, struct.pack("!H", 1000) + b"\xc0\xaf"),  # an invalid close reason
])
def test_invalid_utf8_is_1007(server, data):
    sock = raw_open(server.port)
    sock.sendall(data)
    expect_failed(sock, 1007)


def test_an_oversize_message_is_1009():
    with ForkerProcess("--ws-max-size", "1000", app="asgi_ws:app") as server:
        with ws_connect(f"ws://127.0.0.1:{server.port}/echo?name=big") as ws:
            ws.send(b"x" * 1000)
            assert ws.recv() == b"x" * 1000
            ws.send([b"y" * 600, b"z" * 600])  # too large only once reassembled
            with pytest.raises(ConnectionClosed) as info:
                ws.recv()
        assert info.value.rcvd.code == 1009
        wait_for_event(f"http://127.0.0.1:{server.port}", "big disconnect 1009")


# -- FastAPI, WSGI -------------------------------------------------------------------------

def test_a_fastapi_websocket_route():
    with ForkerProcess(app="asgi_ws:fastapi_app") as server:
        with ws_connect(f"ws://127.0.0.1:{server.port}/items/7?q=find") as ws:
            ws.send("first")
            assert json.loads(ws.recv()) == {"item": 7, "q": "find", "got": "first"}
        with pytest.raises(InvalidStatus) as info:  # a path parameter that is no int
            ws_connect(f"ws://127.0.0.1:{server.port}/items/seven")
        assert info.value.response.status_code == 403


def test_an_upgrade_to_a_wsgi_application_is_an_ordinary_request():
    with ForkerProcess(app="wsgiapps:environ_app") as server:
        response = requests.get(f"http://127.0.0.1:{server.port}/", headers={
            "Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "13",
            "Sec-WebSocket-Key": KEY}, timeout=10)
    assert response.status_code == 200
    assert response.json()["HTTP_UPGRADE"] == "websocket"


# -- uvicorn as the oracle -----------------------------------------------------------------

class Uvicorn:
    """uvicorn (its websockets implementation) serving the same application on
    a unix socket."""

    def __init__(self, app, *options):
        self.dir = tempfile.mkdtemp()
        self.path = os.path.join(self.dir, "uvicorn.sock")
        try:
            self.server = ServerProcess(
                [sys.executable, "-m", "uvicorn", "--uds", self.path, "--log-level", "warning",
                 "--ws", "websockets", *options, app], cwd=APPS, address=f"unix:{self.path}",
                start_timeout=DEADLINE,
                probe=b"GET /pid HTTP/1.1\r\nHost: oracle\r\nConnection: close\r\n\r\n")
        except BaseException:
            shutil.rmtree(self.dir, ignore_errors=True)
            raise

    def connect(self, path, **kwargs):
        return unix_connect(self.path, "ws://oracle" + path, **kwargs)

    def close(self):
        self.server.stop(DEADLINE)
        shutil.rmtree(self.dir, ignore_errors=True)


def conversation(connect_to):
    """What a client sees of the same application: messages, subprotocol, close
    codes, refused handshakes."""
    seen = []
    with connect_to("/echo") as ws:
        ws.send("text")
        ws.send(b"bytes")
        ws.send(["frag", "ments"])
        seen += [ws.recv(), ws.recv(), ws.recv()]
        ws.send("close please")
        with pytest.raises(ConnectionClosed) as info:
            ws.recv()
        seen.append((info.value.rcvd.code, info.value.rcvd.reason))
    with connect_to("/subprotocol", subprotocols=["chat.v1", "chat.v2"]) as ws:
        got = json.loads(ws.recv())
        seen += [ws.subprotocol, got["offered"], got["chosen"], got["type"], got["path"],
                 ws.response.headers.get("x-extra")]
    with connect_to("/server-close") as ws:
        seen.append(ws.recv())
        with pytest.raises(ConnectionClosed) as info:
            ws.recv()
        seen.append((info.value.rcvd.code, info.value.rcvd.reason))
    for path in ("/deny", "/raw/x"):
        with pytest.raises(InvalidStatus) as refused:
            connect_to(path)
        seen.append((refused.value.response.status_code,
                     refused.value.response.body if path == "/raw/x" else None))
    with connect_to("/echo") as ws:
        ws.send(b"x" * 1200)
        with pytest.raises(ConnectionClosed) as info:
            ws.recv()
        seen.append(info.value.rcvd.code)
    return seen


def test_the_same_conversation_as_with_uvicorn():
    """Uncompressed (compression=None); test_deflated_messages_as_with_uvicorn
    has the client's default, permessage-deflate."""
    with ForkerProcess("--ws-max-size", "1000", app="asgi_ws:app") as server:
        oracle = Uvicorn("asgi_ws:app", "--ws-max-size", "1000")
        try:
            ours = conversation(lambda path, **kw: ws_connect(
                f"ws://127.0.0.1:{server.port}" + path, compression=None, **kw))
            theirs = conversation(lambda path, **kw: oracle.connect(path, compression=None,
                                                                    **kw))
        finally:
            oracle.close()
    assert ours == theirs
    assert ours[3] == (4001, "as you asked") and ours[-1] == 1009


# -- keep-alive pings, stopping --------------------------------------------------------------

def test_a_quiet_websocket_is_pinged_and_closed_1011_without_a_pong():
    with ForkerProcess("--ws-ping-interval", "0.5", "--ws-ping-timeout", "1",
                       app="asgi_ws:app") as server:
        # the library answers the server's pings by itself
        with ws_connect(f"ws://127.0.0.1:{server.port}/echo?name=answering",
                        ping_interval=None) as answering:
            silent = raw_open(server.port, "/echo?name=silent")
            assert read_frame(silent)[0] == 0x9  # the server's ping, waited for
            expect_failed(silent, 1011)  # no pong: closed
            wait_for_event(f"http://127.0.0.1:{server.port}", "silent disconnect 1011")
            answering.send("still open")
            assert answering.recv() == "still open"


def test_a_graceful_stop_closes_websockets_with_1001():
    with ForkerProcess(app="asgi_ws:app") as server:
        with ws_connect(f"ws://127.0.0.1:{server.port}/echo") as ws:
            ws.send("before")
            assert ws.recv() == "before"
            server.signal(15)  # TERM: a graceful stop
            with pytest.raises(ConnectionClosed) as info:
                ws.recv()
        assert info.value.rcvd.code == 1001
        assert server.wait(DEADLINE) == 0


# -- permessage-deflate (RFC 7692) ---------------------------------------------------------

OFFER = "permessage-deflate; client_max_window_bits"  # what the websockets client offers
AGREED = "permessage-deflate; server_max_window_bits=12; client_max_window_bits=12"


def raw_open_offering(where, offer, path="/echo?name=raw"):
    """raw_open, offering extensions (Sec-WebSocket-Extensions: offer; None:
    no field): (socket, the 101's Sec-WebSocket-Extensions or None)."""
    sock = connect(where)
    field = f"Sec-WebSocket-Extensions: {offer}\r\n" if offer is not None else ""
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\n"
                 f"Connection: Upgrade\r\nSec-WebSocket-Key: {KEY}\r\n"
                 f"Sec-WebSocket-Version: 13\r\n{field}\r\n".encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(1)
        assert chunk, head
        head += chunk
    assert head.startswith(b"HTTP/1.1 101 "), head

    def values(name):
        return [line.split(b":", 1)[1].strip().decode() for line in head.split(b"\r\n")
                if line.lower().startswith(name + b":")]
    assert values(b"sec-websocket-accept") == [ACCEPT], head
    agreed = values(b"sec-websocket-extensions")
    assert len(agreed) <= 1, head
    return sock, agreed[0] if agreed else None


def deflated(data, bits=9, chunk=1 << 20):
    """data (bytes, or an iterable of pieces) compressed as one message (RFC
    7692 7.2.1: raw deflate, a sync flush, the empty block's four bytes cut)."""
    z = zlib.compressobj(9, zlib.DEFLATED, -bits)
    pieces = [data] if isinstance(data, bytes) else data
    out = b"".join(z.compress(piece) for piece in pieces) + z.flush(zlib.Z_SYNC_FLUSH)
    assert out.endswith(b"\x00\x00\xff\xff")
    return out[:-4]


def read_frame_rsv(sock):
    """The next server frame: (first byte, payload); None at EOF."""
    sock.settimeout(DEADLINE)
    head = sock.recv(1)
    if not head:
        return None
    rest = read_frame_after(sock, head[0])
    return head[0], rest


def read_frame_after(sock, b0):
    def exactly(n):
        data = b""
        while len(data) < n:
            chunk = sock.recv(n - len(data))
            assert chunk, "the server closed inside a frame"
            data += chunk
        return data
    b1 = exactly(1)[0]
    n = b1 & 0x7F
    if n == 126:
        n = struct.unpack("!H", exactly(2))[0]
    elif n == 127:
        n = struct.unpack("!Q", exactly(8))[0]
    return exactly(n)


def closed_with(sock):
    """The close code the server ends the websocket with (our close answers
    its own, as a client does); frames before it are skipped."""
    while True:
        got = read_frame_rsv(sock)
        assert got is not None, "no close frame"
        if got[0] & 0x0F == 0x8:
            break
    try:
        sock.sendall(frame(0x8, got[1][:2]))
    except OSError:
        pass  # the server already closed, as when the loop failed the connection
    rest, closed = read_until_close(sock)
    assert closed
    return close_code(got[1])


def test_deflate_is_negotiated_and_messages_go_both_ways_compressed(server):
    with ws_connect(server.url + "/echo", max_size=4 << 20) as ws:
        assert ws.response.headers["Sec-WebSocket-Extensions"] == AGREED
        for message in ("hello, wörld", "", b"\x00\x01\xff", "a" * 300, b"b" * 300,
                        "compressible " * 1000):
            ws.send(message)
            assert ws.recv() == message
        big = "compressible text, again and again; " * 30000  # about 1 MiB
        ws.send(big)
        assert ws.recv() == big
        blob = bytes(range(256)) * 4096  # 1 MiB
        ws.send(blob)
        assert ws.recv() == blob
        ws.send(os.urandom(1 << 20) * 2)  # 2 MiB, 1 MiB repeating: bigger once inflated
        assert len(ws.recv()) == 2 << 20
        ws.send(["frag" * 40, "mén" * 40, "ted"])  # RSV1 on the first frame only
        assert ws.recv() == "frag" * 40 + "mén" * 40 + "ted"
        ws.send([b"a" * 70000, b"b", b"c" * 10])
        assert ws.recv() == b"a" * 70000 + b"b" + b"c" * 10


def test_the_server_compresses_and_keeps_its_context(server):
    sock, agreed = raw_open_offering(server.port, OFFER)
    assert agreed == AGREED
    inflater = zlib.decompressobj(-12)
    message = b"the same words, message after message " * 4
    sizes = []
    for _ in range(3):
        sock.sendall(frame(0x2, deflated(message), rsv=0x40))
        b0, payload = read_frame_rsv(sock)
        assert b0 == 0xC2  # FIN, RSV1, binary
        assert inflater.decompress(payload + b"\x00\x00\xff\xff") == message
        sizes.append(len(payload))
    assert sizes[1] < sizes[0] / 2  # the window still held the first message
    sock.sendall(frame(0x2, b"short", rsv=0))  # uncompressed messages stay allowed
    assert read_frame_rsv(sock) == (0x82, b"short")  # a short one goes uncompressed
    sock.sendall(frame(0x1, deflated(b"text"), rsv=0x40))
    assert read_frame_rsv(sock) == (0x81, b"text")
    assert closed_with_our_close(sock) == 1000


def closed_with_our_close(sock):
    sock.sendall(frame(0x8, struct.pack("!H", 1000)))
    return closed_with(sock)


@pytest.mark.parametrize("offer, agreed", [
    (OFFER, AGREED),
    ("permessage-deflate", "permessage-deflate; server_max_window_bits=12"),
    ("x-webkit-deflate-frame, permessage-deflate; server_max_window_bits=10; "
     "client_no_context_takeover, permessage-deflate",
     "permessage-deflate; client_no_context_takeover; server_max_window_bits=10"),
    ('permessage-deflate; server_max_window_bits="16", permessage-deflate; '
     'server_no_context_takeover; client_max_window_bits="9"',
     "permessage-deflate; server_no_context_takeover; server_max_window_bits=12; "
     "client_max_window_bits=9"),
    ("permessage-deflate; client_max_window_bits=15; server_max_window_bits=15",
     AGREED),
    ("permessage-deflate; server_max_window_bits=8",
     "permessage-deflate; server_max_window_bits=8"),
    ("permessage-deflate; unknown=1", None),
    ("permessage-deflate; server_max_window_bits", None),
    ("permessage-deflate; server_max_window_bits=07", None),
    ("permessage-deflate; server_no_context_takeover=1", None),
    ("permessage-deflate; server_no_context_takeover; server_no_context_takeover", None),
    ('permessage-deflate; client_max_window_bits="10', None),
    ("x-other", None),
    (None, None),
])
def test_negotiation(server, offer, agreed):
    sock, got = raw_open_offering(server.port, offer)
    assert got == agreed
    message = b"negotiated " * 20
    if got is None:  # no extension: RSV1 is a protocol error
        sock.sendall(frame(0x2, deflated(message), rsv=0x40))
        expect_failed(sock, 1002)
        return
    sock.sendall(frame(0x2, deflated(message), rsv=0x40))
    b0, payload = read_frame_rsv(sock)
    if "server_max_window_bits=8" in got:
        assert (b0, payload) == (0x82, message)  # zlib cannot deflate in 256 bytes
    else:
        assert b0 == 0xC2
        assert zlib.decompressobj(-15).decompress(payload + b"\x00\x00\xff\xff") == message
    assert closed_with_our_close(sock) == 1000


def test_no_ws_per_message_deflate_declines_the_offer():
    with ForkerProcess("--no-ws-per-message-deflate", app="asgi_ws:app") as server:
        with ws_connect(f"ws://127.0.0.1:{server.port}/echo") as ws:
            assert "Sec-WebSocket-Extensions" not in ws.response.headers
            ws.send("plain " * 100)
            assert ws.recv() == "plain " * 100
        sock, agreed = raw_open_offering(server.port, OFFER)
        assert agreed is None
        sock.sendall(frame(0x1, deflated(b"x" * 100), rsv=0x40))
        expect_failed(sock, 1002)


@pytest.mark.parametrize("data", [
    frame(0x1, deflated(b"a" * 40), fin=False) + frame(0x0, b"x", rsv=0x40),  # continuation
    frame(0x9, b"x", rsv=0x40),                                                # ping
    frame(0x8, struct.pack("!H", 1000), rsv=0x40),                              # close
    frame(0x1, b"x", rsv=0x20),                                                # RSV2
])
def test_rsv_bits_the_extension_does_not_allow_are_1002(server, data):
    sock, agreed = raw_open_offering(server.port, OFFER)
    assert agreed == AGREED
    sock.sendall(data)
    expect_failed(sock, 1002)


def bomb():
    """64 MiB of zeros deflated: about 64 KiB."""
    return deflated(b"\x00" * (1 << 20) for _ in range(64))


def worker_peak_kib(http):
    pid = int(requests.get(http + "/pid", timeout=10).text)
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise AssertionError("no VmHWM")


def deflate_failures(open_raw):
    """The close codes of messages that only inflating shows bad: a zip bomb
    (1009 with a 1 MiB limit), invalid UTF-8 (1007), a corrupt stream (1002),
    and, caught by the framing, RSV1 on a continuation (1002)."""
    codes = []
    for data in (frame(0x2, bomb(), rsv=0x40),
                 frame(0x1, deflated(b"valid, then \xff\xfe invalid"), rsv=0x40),
                 frame(0x1, deflated(b"ok \xe2\x82"), rsv=0x40),  # ends inside a character
                 frame(0x2, b"\xff\xff\xff\xff not deflate", rsv=0x40),
                 frame(0x1, deflated(b"a" * 40), fin=False) + frame(0x0, b"x", rsv=0x40)):
        sock = open_raw()
        sock.sendall(frame(0x1, deflated(b"first, fine " * 10), rsv=0x40))
        b0, payload = read_frame_rsv(sock)
        assert b0 in (0x81, 0xC1), b0
        sock.sendall(data)
        codes.append(closed_with(sock))
        sock.close()
    return codes


def test_a_zip_bomb_invalid_utf8_and_corrupt_data_as_with_uvicorn():
    limit = str(1 << 20)
    with ForkerProcess("--ws-max-size", limit, app="asgi_ws:app") as server:
        http = f"http://127.0.0.1:{server.port}"

        def open_ours():
            sock, agreed = raw_open_offering(server.port, OFFER, "/echo?name=deflate")
            assert agreed == AGREED
            return sock

        before = worker_peak_kib(http)
        ours = deflate_failures(open_ours)
        for _ in range(3):  # bombs again: the peak stays bounded
            sock = open_ours()
            sock.sendall(frame(0x2, bomb(), rsv=0x40))
            assert closed_with(sock) == 1009
        grown = worker_peak_kib(http) - before
        assert grown < 24 * 1024, f"the worker's peak grew by {grown} KiB"
        wait_for_event(http, "deflate disconnect 1009")
        wait_for_event(http, "deflate disconnect 1007")
    oracle = Uvicorn("asgi_ws:app", "--ws-max-size", limit)
    try:
        def open_theirs():
            sock, agreed = raw_open_offering("unix:" + oracle.path, OFFER)
            assert agreed == "permessage-deflate"  # uvicorn bounds no window
            return sock

        theirs = deflate_failures(open_theirs)
    finally:
        oracle.close()
    assert ours == theirs == [1009, 1007, 1007, 1002, 1002]


def test_deflated_messages_as_with_uvicorn():
    """The conversation of the uvicorn oracle, compressed on both sides (the
    websockets client's default), gives the same."""
    with ForkerProcess("--ws-max-size", "1000", app="asgi_ws:app") as server:
        oracle = Uvicorn("asgi_ws:app", "--ws-max-size", "1000")
        try:
            with oracle.connect("/echo") as ws:
                theirs_agreed = ws.response.headers.get("Sec-WebSocket-Extensions")
            ours = conversation(lambda path, **kw: ws_connect(
                f"ws://127.0.0.1:{server.port}" + path, **kw))
            theirs = conversation(oracle.connect)
        finally:
            oracle.close()
    assert ours == theirs
    assert theirs_agreed == "permessage-deflate"  # uvicorn: no window bounds


# -- over TLS ----------------------------------------------------------------------------

def test_wss_through_the_websockets_client(tmp_path):
    """wss: the same loop through OpenSSL; the scope says wss; compressed and
    large messages both ways; a ping answered; the close handshake."""
    import ssl

    certfile, keyfile = self_signed(str(tmp_path))
    context = ssl.create_default_context(cafile=certfile)
    big = os.urandom(1 << 19) * 2  # 1 MiB, half of it compressible
    with ForkerProcess("--certfile", certfile, "--keyfile", keyfile,
                       app="asgi_ws:app") as server:
        # (ready once the plain-HTTP probe got the TLS port's 400: the worker serves)
        url = f"wss://localhost:{server.port}"
        with ws_connect(url + "/subprotocol", ssl=context, open_timeout=DEADLINE) as ws:
            assert json.loads(ws.recv())["scheme"] == "wss"
        with ws_connect(url + "/echo", ssl=context, max_size=None, open_timeout=DEADLINE) as ws:
            assert ws.response.headers["sec-websocket-extensions"].startswith("permessage-deflate")
            ws.send("hello over tls " * 100)
            assert ws.recv() == "hello over tls " * 100
            ws.send(big)
            assert ws.recv() == big
            ws.ping(b"p").wait(DEADLINE)
            ws.close(4000, "bye")
        assert ws.close_code == 4000
