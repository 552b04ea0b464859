# Chunk extensions, token and quoted-string values, ignored (RFC 9112 7.1.1).
request = {
    "method": b'POST',
    "target": b'/',
    "path": b'/',
    "query": None,
    "host": b'example.com',
    "version": 'HTTP/1.1',
    "headers": [
        (b'Host', b'example.com'),
        (b'Transfer-Encoding', b'chunked'),
    ],
    "content_length": None,
    "chunked": True,
    "keep_alive": True,
    "expect_continue": False,
    "upgrade": False,
    "absolute_form": False,
    "body": b'wikipedia',
}
