# obs-fold in the trailer section.
status = 400
