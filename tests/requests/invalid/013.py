# HTTP/2.0 is well-formed but not supported.
status = 505
