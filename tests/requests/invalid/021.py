# Junk after the chunk size.
status = 400
