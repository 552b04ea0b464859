"""forker's native handler interface: python -m forker ... benchmarks.apps.native_app:app

Every answer carries Content-Type: text/plain, as the other servers' apps and
nginx's default_type send it, so that the bytes on the wire compare."""

import time

from benchmarks.apps import BIG, GREETING, HEADERS
from forker import Response

_GREETING = Response(GREETING, headers=HEADERS)
_BIG = Response(BIG, headers=HEADERS)
_NOT_FOUND = Response(b"", status=404)


def app(request):
    path = request.path
    if path == "/":
        return _GREETING
    if path == "/100k":
        return _BIG
    if path == "/upload":
        return Response(str(len(request.body)).encode(), headers=HEADERS)
    if path == "/sleep1ms":
        time.sleep(0.001)
        return _GREETING
    return _NOT_FOUND
