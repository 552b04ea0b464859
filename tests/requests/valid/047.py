# Expect on HTTP/1.0 is ignored.
request = {
    "method": b'POST',
    "target": b'/',
    "path": b'/',
    "query": None,
    "host": None,
    "version": 'HTTP/1.0',
    "headers": [
        (b'Expect', b'100-continue'),
        (b'Content-Length', b'2'),
    ],
    "content_length": 2,
    "chunked": False,
    "keep_alive": False,
    "expect_continue": False,
    "upgrade": False,
    "absolute_form": False,
    "body": b'hi',
}
