# Two Host fields in HTTP/1.0.
status = 400
