# Connection: Upgrade with an Upgrade field.
request = {
    "method": b'GET',
    "target": b'/chat',
    "path": b'/chat',
    "query": None,
    "host": b'example.com',
    "version": 'HTTP/1.1',
    "headers": [
        (b'Host', b'example.com'),
        (b'Upgrade', b'websocket'),
        (b'Connection', b'Upgrade'),
        (b'Sec-WebSocket-Key', b'dGhlIHNhbXBsZSBub25jZQ=='),
        (b'Sec-WebSocket-Version', b'13'),
    ],
    "content_length": None,
    "chunked": False,
    "keep_alive": True,
    "expect_continue": False,
    "upgrade": True,
    "absolute_form": False,
    "body": b'',
}
