# Bare LF before the request line.
status = 400
