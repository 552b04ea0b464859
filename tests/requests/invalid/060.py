# Negative chunk size.
status = 400
