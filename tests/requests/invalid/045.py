# CONNECT with an origin-form target.
status = 400
