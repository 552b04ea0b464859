# Expect is case-insensitive.
request = {
    "method": b'POST',
    "target": b'/',
    "path": b'/',
    "query": None,
    "host": b'example.com',
    "version": 'HTTP/1.1',
    "headers": [
        (b'Host', b'example.com'),
        (b'expect', b'100-Continue'),
        (b'Content-Length', b'1'),
    ],
    "content_length": 1,
    "chunked": False,
    "keep_alive": True,
    "expect_continue": True,
    "upgrade": False,
    "absolute_form": False,
    "body": b'z',
}
