# asterisk-form with a method other than OPTIONS.
status = 400
