# Nine empty lines before the request line.
status = 400
