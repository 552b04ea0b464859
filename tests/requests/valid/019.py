# Repeated Content-Length fields with the same value (RFC 9110 8.6).
request = {
    "method": b'POST',
    "target": b'/',
    "path": b'/',
    "query": None,
    "host": b'example.com',
    "version": 'HTTP/1.1',
    "headers": [
        (b'Host', b'example.com'),
        (b'Content-Length', b'3'),
        (b'Content-Length', b'3'),
    ],
    "content_length": 3,
    "chunked": False,
    "keep_alive": True,
    "expect_continue": False,
    "upgrade": False,
    "absolute_form": False,
    "body": b'abc',
}
