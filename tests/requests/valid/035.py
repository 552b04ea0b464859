# Content-Length: 0 is no body.
request = {
    "method": b'POST',
    "target": b'/',
    "path": b'/',
    "query": None,
    "host": b'example.com',
    "version": 'HTTP/1.1',
    "headers": [
        (b'Host', b'example.com'),
        (b'Content-Length', b'0'),
    ],
    "content_length": 0,
    "chunked": False,
    "keep_alive": True,
    "expect_continue": False,
    "upgrade": False,
    "absolute_form": False,
    "body": b'',
}
