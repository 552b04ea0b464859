"""Applications nobody here wrote, served by `python -m forker MODULE:APP` and
talked to with `requests`: httpbin (JSON, forms, uploads, gzip, streaming,
redirects, cookies, basic auth, ranges, HEAD), a Django site (the admin login
with its CSRF token, static files served by WhiteNoise) and Flask (send_file
of a large file, a streamed response).

Gunicorn serves the same application side by side as the oracle (uvicorn for
the Django site's ASGI handler): for each exchange the status, the body and
the header fields that carry meaning must be the same from both (framing fields aside: forker sends a Content-Length
where gunicorn's sync worker chunks, which `requests` hides)."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from typing import Dict, List, Optional

import gunicorn.config as gunicorn_config
import httpbin  # noqa: F401  (the test extra installs these: a missing one fails here)
import pytest
import requests
import whitenoise  # noqa: F401

sys.path.insert(0, os.path.dirname(__file__))

from apps.flask_files import stream_line  # noqa: E402
from harness import APPS, ForkerProcess, ServerProcess, free_port  # noqa: E402

TIMEOUT = 30  # seconds for one exchange: a stalled response fails the test, not the run

# Header fields whose values must agree between forker and gunicorn.
MEANINGFUL = ("content-type", "content-encoding", "content-range", "accept-ranges", "etag",
              "last-modified", "cache-control", "www-authenticate", "vary", "location",
              "access-control-allow-origin", "x-frame-options", "content-disposition")


def gunicorn(*args: str, env: Optional[Dict[str, str]] = None) -> ServerProcess:
    """`python -m gunicorn ARGS` on 127.0.0.1 (one sync worker): the oracle."""
    argv = [sys.executable, "-m", "gunicorn", "--workers", "1", "--bind", "127.0.0.1:0"]
    if any(s.name == "control_socket_disable" for s in gunicorn_config.KNOWN_SETTINGS):
        argv.append("--no-control-socket")  # one per user otherwise: instances would share it
    return ServerProcess(argv + list(args), cwd=APPS, env=env,
                         listening=r"Listening at: http://(\S+)",
                         probe=b"GET / HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n", start_timeout=60)


class Pair:
    """The same application under forker and under gunicorn, a session to each."""

    def __init__(self, forker: ForkerProcess, oracle: ServerProcess) -> None:
        self.forker = forker
        self.oracle = oracle
        self.urls = (f"http://127.0.0.1:{forker.port}", f"http://127.0.0.1:{oracle.port}")

    def both(self, method: str, path: str, session: Optional[List[requests.Session]] = None,
             **kwargs) -> List[requests.Response]:
        """The same request to forker, then to gunicorn."""
        kwargs.setdefault("timeout", TIMEOUT)
        out = []
        for i, url in enumerate(self.urls):
            client = session[i] if session is not None else requests
            out.append(client.request(method, url + path, **kwargs))
        return out

    def norm(self, text: str, which: int) -> str:
        """text with the server's own port replaced, for comparing the two."""
        return text.replace(self.urls[which][len("http://"):], "HOST")

    def compare(self, method: str, path: str, body: bool = True,
                **kwargs) -> List[requests.Response]:
        """both(), then same(): the two responses agree."""
        ours, theirs = self.both(method, path, **kwargs)
        same(self, ours, theirs, body=body)
        return [ours, theirs]


def same(pair: Pair, ours: requests.Response, theirs: requests.Response,
         body: bool = True) -> None:
    """Status, meaningful header fields and (unless body=False) the body agree."""
    assert ours.status_code == theirs.status_code, (ours.status_code, theirs.status_code,
                                                    ours.content[:300])
    for name in MEANINGFUL:
        mine, other = ours.headers.get(name), theirs.headers.get(name)
        if mine is not None and other is not None:
            mine, other = pair.norm(mine, 0), pair.norm(other, 1)
        assert mine == other, (name, mine, other)
    ours_cookies = sorted(c.split("=", 1)[0] for c in ours.raw.headers.getlist("Set-Cookie"))
    theirs_cookies = sorted(c.split("=", 1)[0] for c in theirs.raw.headers.getlist("Set-Cookie"))
    assert ours_cookies == theirs_cookies
    if body:
        assert pair.norm(ours.content.decode("latin-1"), 0) == \
            pair.norm(theirs.content.decode("latin-1"), 1)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# -- httpbin -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def httpbin_pair():
    # two handler threads: request bodies over 64 KiB reach the application streamed
    with ForkerProcess("--threads", "2", app="httpbin:app") as forker, \
            gunicorn("httpbin:app") as oracle:
        yield Pair(forker, oracle)


def test_httpbin_get_json(httpbin_pair):
    ours, theirs = httpbin_pair.compare("GET", "/get?a=1&b=two%20words&a=3",
                                        headers={"X-Custom": "v"}, body=False)
    data = ours.json()
    assert data["args"] == {"a": ["1", "3"], "b": "two words"}
    assert data["headers"]["X-Custom"] == "v" and data["origin"] == "127.0.0.1"
    oracle = theirs.json()
    assert httpbin_pair.norm(data.pop("url"), 0) == httpbin_pair.norm(oracle.pop("url"), 1)
    del data["headers"]["Host"], oracle["headers"]["Host"]
    assert data == oracle


def test_httpbin_post_json_and_form(httpbin_pair):
    payload = {"name": "x\u00e9", "items": list(range(50))}
    ours, theirs = httpbin_pair.compare("POST", "/post", json=payload, body=False)
    assert ours.json()["json"] == theirs.json()["json"] == payload
    form = {"a": "1", "b": "two words", "c": "\u00e9&="}
    ours, theirs = httpbin_pair.compare("POST", "/post", data=form, body=False)
    assert ours.json()["form"] == theirs.json()["form"] == form
    ours, theirs = httpbin_pair.both("PUT", "/put", data=b"raw body",
                                     headers={"Content-Type": "text/plain"})
    assert ours.json()["data"] == theirs.json()["data"] == "raw body"


def test_httpbin_multipart_upload(httpbin_pair):
    text = "".join(f"line {i} of the upload\n" for i in range(40000))  # about 900 KB
    files = {"upload": ("notes.txt", text.encode(), "text/plain")}
    ours, theirs = httpbin_pair.compare("POST", "/post", files=files, data={"note": "n"},
                                        body=False)
    assert ours.json()["files"] == theirs.json()["files"] == {"upload": text}
    assert ours.json()["form"] == theirs.json()["form"] == {"note": "n"}


def test_httpbin_gzip_and_deflate(httpbin_pair):
    for path, flag in (("/gzip", "gzipped"), ("/deflate", "deflated")):
        ours, theirs = httpbin_pair.compare("GET", path, body=False)
        assert ours.headers["Content-Encoding"] in ("gzip", "deflate")
        assert ours.json()[flag] is True and theirs.json()[flag] is True


def test_httpbin_stream(httpbin_pair):
    ours, theirs = httpbin_pair.compare("GET", "/stream/25", stream=True, body=False)
    assert ours.headers.get("Transfer-Encoding") == "chunked"
    ours_lines = [line for line in ours.iter_lines() if line]
    theirs_lines = [line for line in theirs.iter_lines() if line]
    assert len(ours_lines) == 25
    assert [json.loads(httpbin_pair.norm(line.decode(), 0)) for line in ours_lines] == \
        [json.loads(httpbin_pair.norm(line.decode(), 1)) for line in theirs_lines]


def test_httpbin_drip_and_bytes(httpbin_pair):
    ours, theirs = httpbin_pair.compare("GET", "/drip?duration=0&numbytes=3000&code=200&delay=0")
    assert ours.content == b"*" * 3000
    ours, theirs = httpbin_pair.compare("GET", "/bytes/70000?seed=7")  # seeded: the same bytes
    assert len(ours.content) == 70000
    ours, theirs = httpbin_pair.compare("GET", "/stream-bytes/70000?seed=7&chunk_size=1000")
    assert len(ours.content) == 70000


def test_httpbin_redirects(httpbin_pair):
    for path in ("/redirect/3", "/relative-redirect/3", "/absolute-redirect/3"):
        ours, theirs = httpbin_pair.compare("GET", path, body=False)
        assert ours.status_code == 200 and len(ours.history) == 3
        assert [r.status_code for r in ours.history] == [r.status_code for r in theirs.history]
        assert [httpbin_pair.norm(r.headers["Location"], 0) for r in ours.history] == \
            [httpbin_pair.norm(r.headers["Location"], 1) for r in theirs.history]
        assert httpbin_pair.norm(ours.url, 0) == "http://HOST/get"
    ours, theirs = httpbin_pair.compare("GET", "/redirect-to?url=/anything&status_code=307",
                                        allow_redirects=False)
    assert ours.status_code == 307 and ours.headers["Location"] == "/anything"


def test_httpbin_cookies(httpbin_pair):
    sessions = [requests.Session(), requests.Session()]
    ours, theirs = httpbin_pair.compare("GET", "/cookies/set?flavour=oat&n=1", session=sessions)
    assert ours.json() == {"cookies": {"flavour": "oat", "n": "1"}}
    ours, theirs = httpbin_pair.compare("GET", "/cookies/delete?flavour", session=sessions)
    assert ours.json() == {"cookies": {"n": "1"}}
    ours, theirs = httpbin_pair.compare("GET", "/cookies/set?a=1", allow_redirects=False)
    assert ours.status_code == 302 and ours.cookies["a"] == "1"


def test_httpbin_basic_auth(httpbin_pair):
    ours, theirs = httpbin_pair.compare("GET", "/basic-auth/user/s3cret", auth=("user", "s3cret"))
    assert ours.json() == {"authenticated": True, "user": "user"}
    ours, theirs = httpbin_pair.compare("GET", "/basic-auth/user/s3cret", auth=("user", "wrong"))
    assert ours.status_code == 401 and ours.headers["WWW-Authenticate"].startswith("Basic")


def test_httpbin_range(httpbin_pair):
    whole, _ = httpbin_pair.both("GET", "/range/5000")
    assert whole.status_code == 200 and len(whole.content) == 5000
    for spec, part in (("bytes=100-199", whole.content[100:200]),
                       ("bytes=4990-", whole.content[4990:]),
                       ("bytes=-10", whole.content[-10:])):
        ours, theirs = httpbin_pair.compare("GET", "/range/5000", headers={"Range": spec})
        assert ours.status_code == 206 and ours.content == part, spec
    ours, theirs = httpbin_pair.compare("GET", "/range/5000", headers={"Range": "bytes=6000-7000"})
    assert ours.status_code == 416


def test_httpbin_head(httpbin_pair):
    for path in ("/get", "/bytes/1000?seed=1", "/stream/3", "/html"):
        get, _ = httpbin_pair.both("GET", path)
        ours, theirs = httpbin_pair.compare("HEAD", path)
        assert ours.status_code == 200 and ours.content == b""
        # the length a GET has, when stated at all (gunicorn states none for a stream)
        if "Content-Length" in ours.headers:
            assert int(ours.headers["Content-Length"]) == len(get.content), path
        assert ("Content-Length" in ours.headers) == ("Content-Length" in theirs.headers), path
        assert "Transfer-Encoding" not in ours.headers


def test_httpbin_statuses(httpbin_pair):
    for code in (200, 201, 204, 304, 400, 418, 500, 503):
        ours, theirs = httpbin_pair.compare("GET", f"/status/{code}")
        assert ours.status_code == code
        if code in (204, 304):
            assert ours.content == b""


# -- Django: the admin login with CSRF, static files through WhiteNoise ---------------------

DJANGO_DIR = os.path.join(APPS, "djangosite")
STATIC_SIZE = 8 * 1024 * 1024 + 123


@pytest.fixture(scope="module")
def django_site(tmp_path_factory):
    """A migrated database with a superuser, and STATIC_ROOT collected with an
    8 MB file added."""
    site = tmp_path_factory.mktemp("djangosite")
    static = site / "static"
    static.mkdir()
    data = os.urandom(STATIC_SIZE)
    (static / "big.bin").write_bytes(data)
    env = dict(os.environ, DJANGOSITE_DIR=str(site), DJANGO_SUPERUSER_PASSWORD="right-pw")
    for command in (["migrate", "-v0"], ["collectstatic", "--noinput", "-v0"],
                    ["createsuperuser", "--noinput", "--username", "boss",
                     "--email", "boss@example.com"]):
        subprocess.run([sys.executable, "manage.py", *command], cwd=DJANGO_DIR, env=env,
                       check=True, capture_output=True, timeout=120)
    return str(site), data


@pytest.fixture(scope="module")
def django_pair(django_site):
    site, _ = django_site
    env = {"DJANGOSITE_DIR": site}
    with ForkerProcess("--threads", "4", "--chdir", DJANGO_DIR,
                       app="djangosite.wsgi:application", env=env) as forker, \
            gunicorn("--chdir", DJANGO_DIR, "djangosite.wsgi:application", env=env) as oracle:
        yield Pair(forker, oracle)


def test_django_static_file_whole(django_pair, django_site):
    data = django_site[1]
    ours, theirs = django_pair.compare("GET", "/static/big.bin", body=False)
    assert ours.status_code == 200 and int(ours.headers["Content-Length"]) == STATIC_SIZE
    assert sha256(ours.content) == sha256(theirs.content) == sha256(data)


def test_django_static_file_ranges(django_pair, django_site):
    data = django_site[1]
    for spec, part in (("bytes=1000-1999", data[1000:2000]),
                       ("bytes=-500", data[-500:]),
                       (f"bytes={STATIC_SIZE - 4096}-", data[-4096:]),
                       ("bytes=4000000-4999999", data[4000000:5000000])):
        ours, theirs = django_pair.compare("GET", "/static/big.bin", headers={"Range": spec})
        assert ours.status_code == 206 and ours.content == part, spec
        assert int(ours.headers["Content-Length"]) == len(part)


def test_django_static_file_head_and_conditional(django_pair):
    ours, theirs = django_pair.compare("HEAD", "/static/big.bin")
    assert ours.status_code == 200 and ours.content == b""
    assert int(ours.headers["Content-Length"]) == STATIC_SIZE
    etag = ours.headers["ETag"]
    ours, theirs = django_pair.compare("GET", "/static/big.bin", headers={"If-None-Match": etag})
    assert ours.status_code == 304 and ours.content == b""


CSRF_FIELD = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')


def admin_login(url: str, password: str, with_token: bool = True):
    """GET the login form, POST it back: (the POST's response, the session)."""
    session = requests.Session()
    form = session.get(url + "/admin/login/?next=/admin/", timeout=TIMEOUT)
    assert form.status_code == 200 and "csrftoken" in session.cookies, form.text[:300]
    match = CSRF_FIELD.search(form.text)
    assert match, form.text[:1000]
    data = {"username": "boss", "password": password, "next": "/admin/"}
    if with_token:
        data["csrfmiddlewaretoken"] = match.group(1)
    response = session.post(url + "/admin/login/?next=/admin/", data=data,
                            allow_redirects=False, timeout=TIMEOUT)
    return response, session


def test_django_admin_redirects_to_login(django_pair):
    ours, theirs = django_pair.compare("GET", "/admin/", allow_redirects=False)
    assert ours.status_code == 302 and ours.headers["Location"] == "/admin/login/?next=/admin/"


def test_django_admin_login_with_csrf(django_pair):
    for which, url in enumerate(django_pair.urls):
        response, session = admin_login(url, "right-pw")
        assert response.status_code == 302 and response.headers["Location"] == "/admin/", \
            (which, response.status_code, response.text[:500])
        assert "sessionid" in session.cookies
        index = session.get(url + "/admin/", timeout=TIMEOUT)
        assert index.status_code == 200 and "Site administration" in index.text, which


def test_django_admin_login_errors_as_django_means_them(django_pair):
    results = []
    for url in django_pair.urls:
        wrong, _ = admin_login(url, "wrong-pw")
        no_token, _ = admin_login(url, "right-pw", with_token=False)
        results.append((wrong, no_token))
    (wrong, no_token), (wrong_oracle, no_token_oracle) = results
    # a wrong password: the form again, with Django's error
    assert wrong.status_code == wrong_oracle.status_code == 200
    assert "Please enter the correct username and password" in wrong.text
    assert "Please enter the correct username and password" in wrong_oracle.text
    # no CSRF token: refused
    assert no_token.status_code == no_token_oracle.status_code == 403
    assert "CSRF verification failed" in no_token.text


# -- Django's ASGI handler: the same site under forker's ASGI and under uvicorn -----------

@pytest.fixture(scope="module")
def django_asgi_pair(django_site):
    site, _ = django_site
    env = {"DJANGOSITE_DIR": site}
    port = free_port()
    with ForkerProcess("--chdir", DJANGO_DIR, app="djangosite.asgi:application",
                       env=env) as forker, \
            ServerProcess([sys.executable, "-m", "uvicorn", "--host", "127.0.0.1",
                           "--port", str(port), "--log-level", "warning",
                           "djangosite.asgi:application"], cwd=DJANGO_DIR, env=env,
                          address=f"127.0.0.1:{port}", start_timeout=60,
                          probe=b"GET / HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n") as oracle:
        yield Pair(forker, oracle)


def test_django_asgi_admin_login_with_csrf(django_asgi_pair):
    ours, theirs = django_asgi_pair.compare("GET", "/admin/", allow_redirects=False)
    assert ours.status_code == 302 and ours.headers["Location"] == "/admin/login/?next=/admin/"
    for which, url in enumerate(django_asgi_pair.urls):
        response, session = admin_login(url, "right-pw")
        assert response.status_code == 302 and response.headers["Location"] == "/admin/", \
            (which, response.status_code, response.text[:500])
        index = session.get(url + "/admin/", timeout=TIMEOUT)
        assert index.status_code == 200 and "Site administration" in index.text, which
        wrong, _ = admin_login(url, "wrong-pw")
        assert wrong.status_code == 200 and "Please enter the correct username" in wrong.text
        no_token, _ = admin_login(url, "right-pw", with_token=False)
        assert no_token.status_code == 403, which


def test_django_asgi_static_file_whole_and_ranges(django_asgi_pair, django_site):
    data = django_site[1]
    ours, theirs = django_asgi_pair.compare("GET", "/static/big.bin", body=False)
    assert ours.status_code == 200 and int(ours.headers["Content-Length"]) == STATIC_SIZE
    assert sha256(ours.content) == sha256(theirs.content) == sha256(data)
    ours, theirs = django_asgi_pair.compare("GET", "/static/big.bin",
                                            headers={"Range": "bytes=4000000-4999999"})
    assert ours.status_code == 206 and ours.content == data[4000000:5000000]


# -- Flask: send_file of a large file, a streamed response ---------------------------------

FLASK_FILE_SIZE = 20 * 1024 * 1024 + 17


@pytest.fixture(scope="module")
def flask_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("flaskfiles") / "payload.bin"
    data = os.urandom(FLASK_FILE_SIZE)
    path.write_bytes(data)
    return str(path), data


@pytest.fixture(scope="module")
def flask_pair(flask_file):
    env = {"FLASK_FILES_PATH": flask_file[0]}
    with ForkerProcess(app="flask_files:app", env=env) as forker, \
            gunicorn("flask_files:app", env=env) as oracle:
        yield Pair(forker, oracle)


def test_flask_send_file_whole(flask_pair, flask_file):
    data = flask_file[1]
    ours, theirs = flask_pair.compare("GET", "/file", body=False)
    assert ours.status_code == 200 and int(ours.headers["Content-Length"]) == FLASK_FILE_SIZE
    assert sha256(ours.content) == sha256(theirs.content) == sha256(data)


def test_flask_send_file_range_and_conditional(flask_pair, flask_file):
    data = flask_file[1]
    spec = "bytes=10000000-10999999"
    ours, theirs = flask_pair.compare("GET", "/file", headers={"Range": spec})
    assert ours.status_code == 206 and ours.content == data[10000000:11000000]
    ours, theirs = flask_pair.compare("GET", "/file",
                                      headers={"If-None-Match": ours.headers["ETag"]})
    assert ours.status_code == 304 and ours.content == b""
    ours, theirs = flask_pair.compare("HEAD", "/file")
    assert int(ours.headers["Content-Length"]) == FLASK_FILE_SIZE and ours.content == b""


def test_flask_streamed_response(flask_pair):
    expected = "".join(stream_line(i) for i in range(3000)).encode()
    ours, theirs = flask_pair.compare("GET", "/stream?n=3000")
    assert ours.headers.get("Transfer-Encoding") == "chunked"
    assert sha256(ours.content) == sha256(expected)
    ours, theirs = flask_pair.compare("HEAD", "/stream?n=3000")
    assert ours.status_code == 200 and ours.content == b""
    assert "Content-Length" not in ours.headers and "Transfer-Encoding" not in ours.headers
