"""Property tests of the request parser and the chunked decoder.

- a generated valid request parses to its parts, however it is split;
- random and mutated input never crashes, and no split changes what is accepted;
- whatever is accepted, serialised again from its parts, is accepted identically;
- the chunked decoder gives the same outcome for any split of any input.
"""

import string

from forker._parser import ChunkedDecoder, ParseError, parse_request
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_parser import receive  # the same incremental feeding as the corpus tests

SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

TCHAR = "!#$%&'*+-.^_`|~" + string.digits + string.ascii_letters
VCHAR = "".join(chr(c) for c in range(0x21, 0x7F))
OBS_TEXT = "".join(chr(c) for c in range(0x80, 0x100))
SPECIAL = {"host", "content-length", "transfer-encoding", "connection", "expect", "upgrade"}

tokens = st.text(TCHAR, min_size=1, max_size=10)
methods = st.one_of(st.sampled_from(["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH"]), tokens)
field_names = tokens.filter(lambda n: n.lower() not in SPECIAL)
# field values: no OWS at either end, inner SP and HTAB allowed
field_values = st.builds(
    lambda core, inner: inner.join(core) if core else "",
    st.lists(st.text(VCHAR + OBS_TEXT, min_size=1, max_size=8), max_size=4),
    st.sampled_from([" ", "  ", "\t", " \t "]),
)
TARGET_CHARS = VCHAR.replace("#", "")  # a fragment is refused (RFC 9112 §3.2)
paths = st.text(TARGET_CHARS.replace("?", ""), max_size=20).map(lambda s: "/" + s)
queries = st.one_of(st.none(), st.text(TARGET_CHARS, max_size=15))
hosts = st.from_regex(r"\A[a-z0-9.-]{1,20}(:[0-9]{1,5})?\Z").filter(
    lambda h: not h.startswith(":"))


def b(s):
    return s.encode("latin-1")


@st.composite
def chunk_extensions(draw):
    ext = ""
    for _ in range(draw(st.integers(0, 2))):
        bws = draw(st.sampled_from(["", " ", "\t"]))
        ext += bws + ";" + bws + draw(tokens)
        kind = draw(st.sampled_from(["none", "token", "quoted"]))
        if kind == "token":
            ext += bws + "=" + bws + draw(tokens)
        elif kind == "quoted":
            text = draw(st.text(VCHAR.replace('"', "").replace("\\", "") + " \t", max_size=8))
            ext += '="' + text + '\\"' + '"'
    return ext


@st.composite
def chunked_bodies(draw):
    """(wire bytes, decoded body) of a chunked body with extensions and trailers."""
    chunks = draw(st.lists(st.binary(min_size=1, max_size=40), max_size=5))
    wire = b""
    for chunk in chunks:
        size = f"{len(chunk):0{draw(st.integers(1, 4))}x}"
        size = size.upper() if draw(st.booleans()) else size
        wire += b(size + draw(chunk_extensions())) + b"\r\n" + chunk + b"\r\n"
    wire += b("0" + draw(chunk_extensions())) + b"\r\n"
    for name, value in draw(st.lists(st.tuples(field_names, field_values), max_size=2)):
        wire += b(name + ": " + value) + b"\r\n"
    return wire + b"\r\n", b"".join(chunks)


@st.composite
def requests(draw):
    """(raw bytes, expected parts) of a valid request."""
    method, path, query = draw(methods), draw(paths), draw(queries)
    target = path if query is None else path + "?" + query
    minor = draw(st.integers(0, 1))
    fields = [(draw(field_names), draw(field_values)) for _ in range(draw(st.integers(0, 6)))]
    host = draw(hosts) if minor == 1 or draw(st.booleans()) else None
    if host is not None:
        fields.insert(draw(st.integers(0, len(fields))), ("Host", host))
    framing = draw(st.sampled_from(["none", "length", "chunked"] if minor else ["none", "length"]))
    body, wire_body, length = b"", b"", None
    if framing == "length":
        body = wire_body = draw(st.binary(max_size=50))
        length = len(body)
        fields.append(("Content-Length", str(length)))
    elif framing == "chunked":
        wire_body, body = draw(chunked_bodies())
        fields.append(("Transfer-Encoding", "chunked"))
    ows = draw(st.sampled_from(["", " ", "\t", "  "]))
    head = "".join("\r\n" for _ in range(draw(st.integers(0, 2))))
    head += f"{method} {target} HTTP/1.{minor}\r\n"
    head += "".join(f"{n}:{ows}{v}{ows}\r\n" for n, v in fields) + "\r\n"
    expected = {
        "method": b(method),
        "target": b(target),
        "path": b(path),
        "query": None if query is None else b(query),
        "host": None if host is None else b(host),
        "version": f"HTTP/1.{minor}",
        "headers": [(b(n), b(v)) for n, v in fields],
        "content_length": length,
        "chunked": framing == "chunked",
        "keep_alive": minor == 1,
    }
    return b(head) + wire_body, expected, body


def outcome(data, cuts):
    try:
        return receive(data, cuts)
    except ParseError as e:
        return e.status


def cuts_from(data, points):
    return sorted({p % len(data) for p in points if p % len(data)} | {len(data)})


@SETTINGS
@given(requests(), st.lists(st.integers(min_value=1), max_size=6))
def test_valid_request_parses_to_its_parts_in_any_split(request, points):
    data, expected, body = request
    head, got_body, rest = receive(data, [len(data)])
    assert {k: head[k] for k in expected} == expected
    assert got_body == body and rest == b""
    assert receive(data, cuts_from(data, points)) == (head, got_body, rest)


def serialize(head):
    lines = [head["method"] + b" " + head["target"] + b" " + head["version"].encode()]
    lines += [name + b": " + value for name, value in head["headers"]]
    return b"\r\n".join(lines) + b"\r\n\r\n"


def check_accepted(data, points):
    """Never crashes; splitting never turns a refusal into an acceptance or
    changes what is accepted; an accepted head survives a round trip."""
    whole = outcome(data, [len(data)])
    split = outcome(data, cuts_from(data, points))
    if isinstance(whole, tuple) and whole[2] is not None:
        assert split == whole
    if isinstance(split, tuple) and split[2] is not None:
        assert split == whole
    if isinstance(whole, tuple) and whole[0] is not None:
        head = whole[0]
        again = parse_request(serialize(head))
        assert again is not None
        assert {k: v for k, v in again.items() if k != "consumed"} == {
            k: v for k, v in head.items() if k != "consumed"
        }


INTERESTING = [b"\r", b"\n", b"\r\n", b" ", b"\t", b":", b",", b";", b"\x00", b"\x7f", b"\x80",
               b"0", b"9", b"f", b"?", b"/", b"*", b"@", b"chunked", b"Host: a\r\n",
               b"Content-Length: 1\r\n", b"Transfer-Encoding: chunked\r\n", b"HTTP/1.1", b"\r\n\r\n"]


@st.composite
def mutated(draw):
    data = bytearray(draw(requests())[0])
    for _ in range(draw(st.integers(1, 4))):
        i = draw(st.integers(0, len(data)))
        op = draw(st.sampled_from(["insert", "delete", "replace"]))
        piece = draw(st.one_of(st.sampled_from(INTERESTING), st.binary(min_size=1, max_size=3)))
        if op == "insert":
            data[i:i] = piece
        elif op == "delete":
            del data[i : i + len(piece)]
        else:
            data[i : i + len(piece)] = piece
    return bytes(data)


@SETTINGS
@given(mutated(), st.lists(st.integers(min_value=1), max_size=4))
def test_mutated_requests(data, points):
    if data:
        check_accepted(data, points)


@SETTINGS
@given(st.binary(max_size=200), st.lists(st.integers(min_value=1), max_size=4))
def test_random_bytes(data, points):
    if data:
        check_accepted(data, points)


@SETTINGS
@given(st.lists(st.sampled_from(INTERESTING + [b"GET", b" /", b"a", b"X:"]), max_size=30),
       st.lists(st.integers(min_value=1), max_size=4))
def test_random_pieces(pieces, points):
    data = b"GET / HTTP/1.1\r\n" + b"".join(pieces)
    check_accepted(data, points)


def decode(data, cuts):
    decoder, body, start = ChunkedDecoder(), b"", 0
    try:
        for end in cuts:
            decoded, done, leftover = decoder.feed(data[start:end])
            body += decoded
            if done:
                return body, leftover + data[end:]
            start = end
        return body, None
    except ParseError as e:
        return e.status


@SETTINGS
@given(st.one_of(chunked_bodies().map(lambda wb: wb[0]), st.binary(max_size=80)),
       st.lists(st.sampled_from([b"", b"x", b"\r", b"\n", b";", b"0", b"\r\n", b" ", b'"']),
                max_size=3),
       st.lists(st.integers(min_value=1), max_size=6))
def test_chunked_any_split(data, noise, points):
    data = data + b"".join(noise)
    if not data:
        return
    whole = decode(data, [len(data)])
    assert decode(data, cuts_from(data, points)) == whole
    assert decode(data, range(1, len(data) + 1)) == whole


@SETTINGS
@given(chunked_bodies(), st.binary(max_size=20))
def test_chunked_body_and_what_follows(wire_body, rest):
    wire, body = wire_body
    assert decode(wire + rest, [len(wire + rest)]) == (body, rest)
