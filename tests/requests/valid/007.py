# absolute-form without a path: the path is empty.
request = {
    "method": b'GET',
    "target": b'http://example.com',
    "path": b'',
    "query": None,
    "host": b'example.com',
    "version": 'HTTP/1.1',
    "headers": [
        (b'Host', b'example.com'),
    ],
    "content_length": None,
    "chunked": False,
    "keep_alive": True,
    "expect_continue": False,
    "upgrade": False,
    "absolute_form": True,
    "body": b'',
}
