# Percent-encoded reg-name in Host.
request = {
    "method": b'GET',
    "target": b'/',
    "path": b'/',
    "query": None,
    "host": b'ex%41mple.com',
    "version": 'HTTP/1.1',
    "headers": [
        (b'Host', b'ex%41mple.com'),
    ],
    "content_length": None,
    "chunked": False,
    "keep_alive": True,
    "expect_continue": False,
    "upgrade": False,
    "absolute_form": False,
    "body": b'',
}
