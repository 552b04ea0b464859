# HTTP/1.2 is well-formed but not supported.
status = 505
