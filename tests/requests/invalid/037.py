# Space inside a field name.
status = 400
