# Whitespace between field name and colon (RFC 9112 5.1).
status = 400
