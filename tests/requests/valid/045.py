# CONNECT to an IPv6 literal.
request = {
    "method": b'CONNECT',
    "target": b'[::1]:8443',
    "path": b'[::1]:8443',
    "query": None,
    "host": b'[::1]:8443',
    "version": 'HTTP/1.1',
    "headers": [
        (b'Host', b'[::1]:8443'),
    ],
    "content_length": None,
    "chunked": False,
    "keep_alive": True,
    "expect_continue": False,
    "upgrade": False,
    "absolute_form": False,
    "body": b'',
}
