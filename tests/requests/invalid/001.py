# CL.TE: Content-Length and Transfer-Encoding together (RFC 9112 6.1).
status = 400
