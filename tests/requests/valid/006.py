# absolute-form: the authority is the host and wins over Host (RFC 9112 3.2.2).
request = {
    "method": b'GET',
    "target": b'http://target.example:8080/a/b?c=d',
    "path": b'/a/b',
    "query": b'c=d',
    "host": b'target.example:8080',
    "version": 'HTTP/1.1',
    "headers": [
        (b'Host', b'other.example'),
    ],
    "content_length": None,
    "chunked": False,
    "keep_alive": True,
    "expect_continue": False,
    "upgrade": False,
    "absolute_form": True,
    "body": b'',
}
