# Empty field name.
status = 400
