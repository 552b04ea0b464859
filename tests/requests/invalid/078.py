# chunked on two field lines.
status = 400
