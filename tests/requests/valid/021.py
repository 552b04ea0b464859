# Connection: keep-alive keeps a 1.0 connection.
request = {
    "method": b'GET',
    "target": b'/',
    "path": b'/',
    "query": None,
    "host": None,
    "version": 'HTTP/1.0',
    "headers": [
        (b'Connection', b'Keep-Alive'),
    ],
    "content_length": None,
    "chunked": False,
    "keep_alive": True,
    "expect_continue": False,
    "upgrade": False,
    "absolute_form": False,
    "body": b'',
}
