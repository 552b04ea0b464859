# DEL in the target.
status = 400
