# Trailer field with whitespace before the colon.
status = 400
