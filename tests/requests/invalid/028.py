# Transfer-Encoding in HTTP/1.0 (RFC 9112 6.1).
status = 400
