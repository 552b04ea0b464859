# authority-form with CONNECT: the path is the authority.
request = {
    "method": b'CONNECT',
    "target": b'example.com:443',
    "path": b'example.com:443',
    "query": None,
    "host": b'example.com:443',
    "version": 'HTTP/1.1',
    "headers": [
        (b'Host', b'example.com:443'),
    ],
    "content_length": None,
    "chunked": False,
    "keep_alive": True,
    "expect_continue": False,
    "upgrade": False,
    "absolute_form": False,
    "body": b'',
}
