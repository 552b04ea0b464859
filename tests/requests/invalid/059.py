# Chunk size with 0x prefix.
status = 400
