# Trailer fields after the last chunk are validated and discarded.
request = {
    "method": b'POST',
    "target": b'/',
    "path": b'/',
    "query": None,
    "host": b'example.com',
    "version": 'HTTP/1.1',
    "headers": [
        (b'Host', b'example.com'),
        (b'Transfer-Encoding', b'chunked'),
        (b'Trailer', b'Expires'),
    ],
    "content_length": None,
    "chunked": True,
    "keep_alive": True,
    "expect_continue": False,
    "upgrade": False,
    "absolute_form": False,
    "body": b'abc',
}
