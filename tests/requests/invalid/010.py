# Bare LF ending a field line.
status = 400
