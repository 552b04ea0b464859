# More than 100 fields.
status = 431
