# Host with a port.
request = {
    "method": b'GET',
    "target": b'/',
    "path": b'/',
    "query": None,
    "host": b'localhost:8000',
    "version": 'HTTP/1.1',
    "headers": [
        (b'Host', b'localhost:8000'),
    ],
    "content_length": None,
    "chunked": False,
    "keep_alive": True,
    "expect_continue": False,
    "upgrade": False,
    "absolute_form": False,
    "body": b'',
}
