# An empty Host value is allowed (RFC 9112 3.2).
request = {
    "method": b'GET',
    "target": b'/',
    "path": b'/',
    "query": None,
    "host": b'',
    "version": 'HTTP/1.1',
    "headers": [
        (b'Host', b''),
    ],
    "content_length": None,
    "chunked": False,
    "keep_alive": True,
    "expect_continue": False,
    "upgrade": False,
    "absolute_form": False,
    "body": b'',
}
