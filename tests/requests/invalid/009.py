# Bare CR in a field value.
status = 400
