# Non-ASCII byte in the target.
status = 400
