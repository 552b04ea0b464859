# The version name is case-sensitive.
status = 400
