# TE.CL: the same, other order.
status = 400
