# Unknown coding on its own field line before chunked: not implemented.
status = 501
