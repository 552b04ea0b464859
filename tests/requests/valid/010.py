# Content-Length body.
request = {
    "method": b'POST',
    "target": b'/submit',
    "path": b'/submit',
    "query": None,
    "host": b'example.com',
    "version": 'HTTP/1.1',
    "headers": [
        (b'Host', b'example.com'),
        (b'Content-Type', b'text/plain'),
        (b'Content-Length', b'11'),
    ],
    "content_length": 11,
    "chunked": False,
    "keep_alive": True,
    "expect_continue": False,
    "upgrade": False,
    "absolute_form": False,
    "body": b'hello world',
}
