# Transfer-Encoding continued with obs-fold.
status = 400
