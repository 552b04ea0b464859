# No CRLF after the chunk data.
status = 400
