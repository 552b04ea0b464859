# Hexadecimal Content-Length.
status = 400
