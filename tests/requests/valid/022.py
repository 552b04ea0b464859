# Expect: 100-continue.
request = {
    "method": b'PUT',
    "target": b'/f',
    "path": b'/f',
    "query": None,
    "host": b'example.com',
    "version": 'HTTP/1.1',
    "headers": [
        (b'Host', b'example.com'),
        (b'Expect', b'100-continue'),
        (b'Content-Length', b'4'),
    ],
    "content_length": 4,
    "chunked": False,
    "keep_alive": True,
    "expect_continue": True,
    "upgrade": False,
    "absolute_form": False,
    "body": b'data',
}
