"""WSGI app for forker --interface wsgi, gunicorn, granian --interface wsgi,
bjoern and meinheld."""

import time

from benchmarks.apps import BIG, GREETING


def app(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/":
        body = GREETING
    elif path == "/100k":
        body = BIG
    elif path == "/upload":
        stream = environ["wsgi.input"]
        size = 0
        while True:
            chunk = stream.read(65536)
            if not chunk:
                break
            size += len(chunk)
        body = str(size).encode()
    elif path == "/sleep1ms":
        time.sleep(0.001)
        body = GREETING
    else:
        start_response("404 Not Found", [("Content-Length", "0")])
        return [b""]
    start_response(
        "200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))]
    )
    return [body]
