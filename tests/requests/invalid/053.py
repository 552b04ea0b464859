# Whitespace before the request line.
status = 400
