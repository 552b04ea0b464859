# Empty Transfer-Encoding.
status = 400
