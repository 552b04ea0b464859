# Path in Host.
status = 400
