"""The Flask application of the real-application scenarios, for every WSGI
server: GET / answers the greeting (the harness's start-up and head checks),
GET /json a small JSON object through jsonify."""

from flask import Flask, Response, jsonify

from benchmarks.apps import GREETING

app = Flask(__name__)


@app.get("/")
def greeting():
    return Response(GREETING, content_type="text/plain")


@app.get("/json")
def json_endpoint():
    return jsonify(message="Hello, World!")
