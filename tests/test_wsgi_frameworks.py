"""Flask and Django served by `python -m forker --interface wsgi` through real
sockets: routing, JSON, a form POST, a multipart upload, a streaming
response, 404 and 500, each with one handler thread and with --threads 4."""

from __future__ import annotations

import json
import os
import sys

import pytest

pytest.importorskip("flask")
pytest.importorskip("django")
requests = pytest.importorskip("requests")

sys.path.insert(0, os.path.dirname(__file__))

from harness import APPS, ForkerProcess  # noqa: E402

FRAMEWORKS = {  # options, application
    "flask": ([], "flaskapp:create_app()"),
    "django": (["--chdir", os.path.join(APPS, "djangoproject")], "djangoproject.wsgi:application"),
}


@pytest.fixture(scope="module", params=[(name, threads) for name in FRAMEWORKS
                                        for threads in ("1", "4")],
                ids=lambda p: f"{p[0]}-threads{p[1]}")
def site(request):
    name, threads = request.param
    options, app = FRAMEWORKS[name]
    # no --interface: the application's signature says WSGI
    with ForkerProcess("--threads", threads, *options, app=app, cwd=APPS) as server:
        server.name = name
        server.url = f"http://127.0.0.1:{server.port}"
        yield server


def test_routing(site):
    response = requests.get(site.url + "/", timeout=10)
    assert response.status_code == 200 and response.text == f"{site.name} index"
    response = requests.get(site.url + "/hello/w%C3%B6rld", timeout=10)
    assert response.status_code == 200 and response.text == "hello wörld"


def test_json(site):
    payload = {"items": [1, 2, 3], "name": "x\u00e9"}
    response = requests.post(site.url + "/json", json=payload, timeout=10)
    assert response.status_code == 200
    assert response.json() == {"received": payload, "count": 2}


def test_form_post(site):
    response = requests.post(site.url + "/form", data={"a": "1", "b": "two words"}, timeout=10)
    assert response.status_code == 200
    assert response.json() == {"a": "1", "b": "two words"}


def test_multipart_upload(site):
    content = bytes(range(256)) * 1024  # 256 KiB, every byte value
    response = requests.post(site.url + "/upload", files={"file": ("data.bin", content)},
                             data={"note": "hi"}, timeout=10)
    assert response.status_code == 200
    assert response.json() == {"filename": "data.bin", "size": len(content),
                               "head": bytes(range(16)).decode("latin-1"), "note": "hi"}


def test_large_multipart_upload(site):
    """4 MiB: received whole with --threads 1, streamed through wsgi.input
    with --threads 4 (past the 64 KiB default body_buffer_size)."""
    content = os.urandom(4 << 20)
    response = requests.post(site.url + "/upload", files={"file": ("big.bin", content)},
                             data={"note": "large"}, timeout=30)
    assert response.status_code == 200
    assert response.json() == {"filename": "big.bin", "size": len(content),
                               "head": content[:16].decode("latin-1"), "note": "large"}


def test_chunked_upload(site):
    def chunks():
        yield b'{"streamed": '
        yield b'true, "n": 1}'

    response = requests.post(site.url + "/json", data=chunks(),
                             headers={"Content-Type": "application/json"}, timeout=10)
    assert response.status_code == 200
    assert response.json()["received"] == {"streamed": True, "n": 1}


def test_streaming_response(site):
    response = requests.get(site.url + "/stream", stream=True, timeout=10)
    assert response.status_code == 200
    assert response.headers.get("Transfer-Encoding") == "chunked"
    assert list(response.iter_lines()) == [f"line {i}".encode() for i in range(5)]


def test_404(site):
    response = requests.get(site.url + "/missing", timeout=10)
    assert response.status_code == 404


def test_500(site):
    response = requests.get(site.url + "/error", timeout=10)
    assert response.status_code == 500
    site.wait_for(f"{site.name} view failed")
    assert requests.get(site.url + "/", timeout=10).status_code == 200  # still serving


def test_url_and_proxy_headers(site):
    response = requests.get(site.url + "/url?x=1", timeout=10,
                            headers={"X-Forwarded-For": "198.51.100.4",
                                     "X-Forwarded-Proto": "https"})
    data = response.json()
    assert data["remote"] == "198.51.100.4"
    assert data["url"] == f"https://127.0.0.1:{site.port}/url?x=1"


def test_keep_alive_session(site):
    with requests.Session() as session:
        for _ in range(3):
            assert session.get(site.url + "/", timeout=10).status_code == 200


def test_django_under_root_path():
    with ForkerProcess("--interface", "wsgi", "--root-path", "/mounted", "--chdir",
                       os.path.join(APPS, "djangoproject"), app="djangoproject.wsgi") as server:
        response = requests.get(f"http://127.0.0.1:{server.port}/mounted/url", timeout=10)
        data = json.loads(response.content)
        assert data["script"] == "/mounted"
        assert data["url"] == f"http://127.0.0.1:{server.port}/mounted/url"
