# chunked not the final coding (RFC 9112 6.3).
status = 400
