# Content-Length fields that disagree.
status = 400
