# Negative Content-Length.
status = 400
