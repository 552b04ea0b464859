# Upgrade without Connection: upgrade is not an upgrade.
request = {
    "method": b'GET',
    "target": b'/',
    "path": b'/',
    "query": None,
    "host": b'example.com',
    "version": 'HTTP/1.1',
    "headers": [
        (b'Host', b'example.com'),
        (b'Upgrade', b'h2c'),
    ],
    "content_length": None,
    "chunked": False,
    "keep_alive": True,
    "expect_continue": False,
    "upgrade": False,
    "absolute_form": False,
    "body": b'',
}
