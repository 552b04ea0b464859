# Method with a non-token byte.
status = 400
