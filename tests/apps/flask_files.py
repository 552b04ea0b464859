"""A Flask application serving files as one does in production: send_file of
FLASK_FILES_PATH (conditional: Range, If-None-Match), and a streamed response
whose content is known to the tests.

    /file           the file, with send_file
    /stream?n=N     N lines "line <i> <64 hex digits of sha256(i)>", streamed
"""

import hashlib
import os

from flask import Flask, Response, request, send_file

app = Flask(__name__)


def stream_line(i):
    return f"line {i} {hashlib.sha256(str(i).encode()).hexdigest()}\n"


@app.route("/file")
def file():
    return send_file(os.environ["FLASK_FILES_PATH"], mimetype="application/octet-stream",
                     conditional=True, etag=True)


@app.route("/stream")
def stream():
    count = int(request.args.get("n", "100"))
    return Response((stream_line(i) for i in range(count)), mimetype="text/plain")
