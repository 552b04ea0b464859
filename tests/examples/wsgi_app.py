"""A plain WSGI application (PEP 3333), served with interface="wsgi".

    python tests/examples/wsgi_app.py              # all interfaces, port 8080
    python -m forker --interface wsgi tests.examples.wsgi_app
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterable

from forker import serve

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment


def application(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    body = f"{environ['REQUEST_METHOD']} {environ['PATH_INFO']}\n".encode()
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", str(len(body)))])
    return [body]


if __name__ == "__main__":
    serve(application, ":8080", interface="wsgi")
