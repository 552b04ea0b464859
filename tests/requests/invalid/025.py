# A coding other than chunked before it: not implemented.
status = 501
