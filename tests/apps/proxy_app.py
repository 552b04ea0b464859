"""A native handler for the PROXY protocol tests: "<remote_addr> <remote_port>
<path>" of each request, and /pid."""

import os


def app(request):
    if request.path == "/pid":
        return str(os.getpid())
    return f"{request.remote_addr} {request.remote_port} {request.path}"
