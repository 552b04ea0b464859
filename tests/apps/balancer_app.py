"""A native handler for the load-balancer tests: every answer names the instance
(BALANCER_INSTANCE) and echoes the request's id, so that a response given to the
wrong request shows. A little work per request keeps requests in flight when an
instance is told to stop.

    GET /work?ID          "<instance> <ID>" after about a millisecond
    POST /work?ID         "<instance> <ID> <body length>"
    GET /sleep?SECONDS    "<instance>" after that long
    anything else         "<instance>"
"""

import os
import time

INSTANCE = os.environ.get("BALANCER_INSTANCE", "forker")


def app(request):
    if request.path == "/sleep":
        time.sleep(float(request.query))
        return INSTANCE
    if request.path != "/work":
        return INSTANCE
    time.sleep(0.001)
    if request.method == "POST":
        return f"{INSTANCE} {request.query} {len(request.body)}"
    return f"{INSTANCE} {request.query}"
