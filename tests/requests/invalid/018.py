# Space inside the target.
status = 400
