# Connection element that is not a token.
status = 400
