# Two-digit minor version.
status = 400
