# obs-fold (RFC 9112 5.2).
status = 400
