# Last chunk without the final CRLF, then a request: read as a bad trailer.
status = 400
