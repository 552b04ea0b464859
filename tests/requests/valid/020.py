# Connection: close ends a 1.1 connection.
request = {
    "method": b'GET',
    "target": b'/',
    "path": b'/',
    "query": None,
    "host": b'example.com',
    "version": 'HTTP/1.1',
    "headers": [
        (b'Host', b'example.com'),
        (b'Connection', b'close'),
    ],
    "content_length": None,
    "chunked": False,
    "keep_alive": False,
    "expect_continue": False,
    "upgrade": False,
    "absolute_form": False,
    "body": b'',
}
