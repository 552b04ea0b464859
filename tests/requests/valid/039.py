# HTTP/1.0 with Host and keep-alive.
request = {
    "method": b'HEAD',
    "target": b'/x',
    "path": b'/x',
    "query": None,
    "host": b'example.com',
    "version": 'HTTP/1.0',
    "headers": [
        (b'Host', b'example.com'),
        (b'Connection', b'keep-alive'),
    ],
    "content_length": None,
    "chunked": False,
    "keep_alive": True,
    "expect_continue": False,
    "upgrade": False,
    "absolute_form": False,
    "body": b'',
}
