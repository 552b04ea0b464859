# A target ending with '?' has an empty, not absent, query.
request = {
    "method": b'GET',
    "target": b'/p?',
    "path": b'/p',
    "query": b'',
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
    "absolute_form": False,
    "body": b'',
}
