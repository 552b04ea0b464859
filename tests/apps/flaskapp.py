"""A small Flask application: routing, JSON, forms, uploads, streaming, errors."""

import time

from flask import Flask, Response, abort, jsonify, request, stream_with_context


def create_app(name="flaskapp"):
    app = Flask(name)

    @app.route("/")
    def index():
        return "flask index"

    @app.route("/hello/<name>")
    def hello(name):
        return f"hello {name}"

    @app.route("/json", methods=["POST"])
    def echo_json():
        data = request.get_json()
        return jsonify(received=data, count=len(data))

    @app.route("/form", methods=["POST"])
    def form():
        return jsonify(dict(request.form))

    @app.route("/upload", methods=["POST"])
    def upload():
        f = request.files["file"]
        content = f.read()
        return jsonify(filename=f.filename, size=len(content), head=content[:16].decode("latin-1"),
                       note=request.form.get("note"))

    @app.route("/stream")
    def stream():
        def generate():
            for i in range(5):
                yield f"line {i}\n"
                time.sleep(0.005)
        return Response(stream_with_context(generate()), mimetype="text/plain")

    @app.route("/error")
    def error():
        raise RuntimeError("flask view failed")

    @app.route("/forbidden")
    def forbidden():
        abort(403)

    @app.route("/url")
    def url():
        return jsonify(url=request.url, remote=request.remote_addr, root=request.script_root)

    @app.route("/slow")
    def slow():
        time.sleep(0.1)
        return "slow"

    return app


app = create_app()
