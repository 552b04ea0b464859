# Empty list element after chunked.
status = 400
