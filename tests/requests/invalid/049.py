# userinfo in Host.
status = 400
