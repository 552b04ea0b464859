# absolute-form https with a query and no path.
request = {
    "method": b'GET',
    "target": b'https://example.com?x=1',
    "path": b'',
    "query": b'x=1',
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
