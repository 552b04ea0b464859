# Target that is none of the four forms.
status = 400
