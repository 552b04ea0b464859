# Request line over 8190 bytes.
status = 414
