# Unterminated quoted-string in a chunk extension.
status = 400
