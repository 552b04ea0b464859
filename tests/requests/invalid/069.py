# Content-Length with inner space.
status = 400
