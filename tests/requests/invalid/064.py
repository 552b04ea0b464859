# NUL in a chunk extension.
status = 400
