# Vertical tab after chunked.
status = 400
