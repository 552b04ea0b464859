# Bare LF after chunk data.
status = 400
