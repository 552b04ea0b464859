# Bare LF after the chunk size.
status = 400
