# HTTP/0.9 simple request (no version).
status = 400
