# HTTP/1.0 needs no Host and does not persist by default.
request = {
    "method": b'GET',
    "target": b'/index.html',
    "path": b'/index.html',
    "query": None,
    "host": None,
    "version": 'HTTP/1.0',
    "headers": [],
    "content_length": None,
    "chunked": False,
    "keep_alive": False,
    "expect_continue": False,
    "upgrade": False,
    "absolute_form": False,
    "body": b'',
}
