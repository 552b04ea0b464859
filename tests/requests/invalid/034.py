# Content-Length of 19 digits.
status = 400
