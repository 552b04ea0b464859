# Pipelined requests: only the first head is consumed.
request = {
    "consumed": 38,
    "method": b'GET',
    "target": b'/1',
    "path": b'/1',
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
    "absolute_form": False,
    "body": b'',
}
