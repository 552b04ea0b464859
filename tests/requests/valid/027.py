# Host as an IPv6 literal.
request = {
    "method": b'GET',
    "target": b'/',
    "path": b'/',
    "query": None,
    "host": b'[2001:db8::1]:8080',
    "version": 'HTTP/1.1',
    "headers": [
        (b'Host', b'[2001:db8::1]:8080'),
    ],
    "content_length": None,
    "chunked": False,
    "keep_alive": True,
    "expect_continue": False,
    "upgrade": False,
    "absolute_form": False,
    "body": b'',
}
