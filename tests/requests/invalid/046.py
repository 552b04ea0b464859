# absolute-form with userinfo (RFC 9110 4.2.4).
status = 400
