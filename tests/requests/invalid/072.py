# identity alone is not chunked final.
status = 400
