# Space in Host.
status = 400
