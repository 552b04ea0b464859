# Whitespace at the start of the first field line.
status = 400
