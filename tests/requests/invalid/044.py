# CONNECT without a port.
status = 400
