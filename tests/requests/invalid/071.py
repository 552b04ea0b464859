# Non-ASCII byte in a field name.
status = 400
