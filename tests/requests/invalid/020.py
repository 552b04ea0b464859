# Chunk size overflowing 63 bits.
status = 400
