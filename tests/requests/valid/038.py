# A long Cookie field.
request = {
    "method": b'GET',
    "target": b'/',
    "path": b'/',
    "query": None,
    "host": b'example.com',
    "version": 'HTTP/1.1',
    "headers": [
        (b'Host', b'example.com'),
        (b'Cookie', b'c0=vvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvv; c1=vvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvv; c2=vvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvv; c3=vvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvv; c4=vvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvv; c5=vvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvv; c6=vvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvv; c7=vvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvv; c8=vvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvv; c9=vvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvv; c10=vvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvv; c11=vvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvv; c12=vvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvv; c13=vvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvv; c14=vvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvv; c15=vvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvv; c16=vvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvv; c17=vvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvv; c18=vvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvv; c19=vvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvv; c20=vvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvv; c21=vvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvv; c22=vvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvv; c23=vvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvv; c24=vvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvv; c25=vvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvv; c26=vvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvv; c27=vvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvv; c28=vvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvv; c29=vvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvv; c30=vvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvv; c31=vvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvv; c32=vvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvv; c33=vvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvv; c34=vvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvv; c35=vvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvv; c36=vvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvv; c37=vvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvv; c38=vvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvv; c39=vvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvv; c40=vvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvv; c41=vvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvv; c42=vvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvv; c43=vvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvv; c44=vvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvv; c45=vvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvv; c46=vvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvv; c47=vvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvv; c48=vvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvv; c49=vvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvv; c50=vvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvv; c51=vvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvv; c52=vvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvv; c53=vvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvv; c54=vvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvv; c55=vvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvv; c56=vvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvv; c57=vvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvv; c58=vvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvv; c59=vvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvv'),
    ],
    "content_length": None,
    "chunked": False,
    "keep_alive": True,
    "expect_continue": False,
    "upgrade": False,
    "absolute_form": False,
    "body": b'',
}
