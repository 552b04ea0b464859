# A coding that only contains the word chunked.
status = 400
