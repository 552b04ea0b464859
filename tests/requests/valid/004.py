# Query: everything after the first '?'.
request = {
    "method": b'GET',
    "target": b'/search?q=a%20b&x=?y',
    "path": b'/search',
    "query": b'q=a%20b&x=?y',
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
