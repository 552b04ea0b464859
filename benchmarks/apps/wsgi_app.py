"""WSGI app for forker --interface wsgi, gunicorn, granian --interface wsgi,
bjoern and meinheld. Besides the four common endpoints:

GET /json     a small JSON object, serialized per request
GET /1m       a 1 MiB body (one object for every request)
GET /file20m  a 20 MiB file through wsgi.file_wrapper (sendfile where the
              server has it), created once in the temporary directory"""

import json
import os
import tempfile
import time

from benchmarks.apps import BIG, GREETING

MEGA = b"m" * (1 << 20)
FILE_SIZE = 20 << 20
FILE_PATH = os.path.join(tempfile.gettempdir(), "forker-bench-file20m")


def _big_file() -> str:
    if not (os.path.exists(FILE_PATH) and os.path.getsize(FILE_PATH) == FILE_SIZE):
        part = f"{FILE_PATH}.{os.getpid()}"
        with open(part, "wb") as f:
            f.write(b"y" * FILE_SIZE)
        os.replace(part, FILE_PATH)
    return FILE_PATH


_big_file()


def _chunks(f):
    with f:
        while chunk := f.read(1 << 20):
            yield chunk


def app(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/":
        body = GREETING
    elif path == "/100k":
        body = BIG
    elif path == "/1m":
        body = MEGA
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
    elif path == "/json":
        body = json.dumps({"message": "Hello, World!"}).encode()
        start_response(
            "200 OK",
            [("Content-Type", "application/json"), ("Content-Length", str(len(body)))],
        )
        return [body]
    elif path == "/file20m":
        f = open(_big_file(), "rb")
        start_response(
            "200 OK",
            [("Content-Type", "application/octet-stream"),
             ("Content-Length", str(FILE_SIZE))],
        )  # fmt: skip
        wrapper = environ.get("wsgi.file_wrapper")
        if wrapper is not None:
            return wrapper(f, 1 << 20)
        return _chunks(f)
    else:
        start_response("404 Not Found", [("Content-Length", "0")])
        return [b""]
    start_response(
        "200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))]
    )
    return [body]
