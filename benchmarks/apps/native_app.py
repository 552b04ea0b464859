"""forker's native handler interface: python -m forker ... benchmarks.apps.native_app:app"""

import time

from benchmarks.apps import BIG, GREETING
from forker import Response

_NOT_FOUND = Response(b"", status=404)


def app(request):
    path = request.path
    if path == "/":
        return GREETING
    if path == "/100k":
        return BIG
    if path == "/upload":
        return str(len(request.body)).encode()
    if path == "/sleep1ms":
        time.sleep(0.001)
        return GREETING
    return _NOT_FOUND
