# Percent-encoding, sub-delims and other VCHARs in the target.
request = {
    "method": b'GET',
    "target": b"/a%2Fb/c;p=1/d!$&'()*+,=:@-._~?k=[v]&j={}",
    "path": b"/a%2Fb/c;p=1/d!$&'()*+,=:@-._~",
    "query": b'k=[v]&j={}',
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
