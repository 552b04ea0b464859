# absolute-form with an empty authority (RFC 9110 4.2.1).
status = 400
