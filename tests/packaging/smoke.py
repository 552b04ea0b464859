"""Smoke test of an installed forker, run by the interpreter it is installed in
and from outside any checkout (tests/packaging/smoke_wheel.sh, cibuildwheel's
test-command):

    python smoke.py

Checks that the package came from that interpreter's environment with its
compiled modules, stubs and py.typed, and that `forker --version` works. Then
serves, each time with `python -m forker ... --workers 1` and checking that TERM
stops it with exit status 0:

- the built-in greeting (greeting!!!, which the C loop answers alone);
- a native Python handler: its answer, a streamed body (chunked) and a 1 MB
  file body (sendfile), over plain HTTP and, for the same application, over a
  TLS listener with a self-signed certificate (made with the openssl command,
  else taken from the interpreter's own test package);
- a WSGI application, reading a request body through wsgi.input.

Standard library only."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.request
from pathlib import Path
from typing import Dict, List, Optional, Tuple

TIMEOUT = 60.0  # generous: wheels are also tested under emulation
FILE_SIZE = 1 << 20

APPS = '''
import os

from forker.response import Response

FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "payload.bin")


def pieces():
    for i in range(64):
        yield b"%d:" % i + b"s" * (i * 97)


def native(request):
    if request.path == "/file":
        return Response(open(FILE, "rb"), headers=[("Content-Type", "application/octet-stream")])
    if request.path == "/stream":
        return Response(pieces())
    return "native %s %s %s" % (request.method, request.path, os.getpid())


def wsgi(environ, start_response):
    body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
    answer = ("wsgi %s %s %s " % (environ["REQUEST_METHOD"], environ["PATH_INFO"],
                                   environ["wsgi.url_scheme"])).encode() + body
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", str(len(answer)))])
    return [answer]
'''


def fail(message: str) -> None:
    print(f"smoke: FAIL: {message}", file=sys.stderr)
    raise SystemExit(1)


def check_install() -> None:
    import forker
    import forker._parser
    import forker._worker
    import forker._wsgi

    package = Path(forker.__file__).resolve().parent
    if not str(package).startswith(str(Path(sys.prefix).resolve())):
        fail(f"forker imported from {package}, not from this environment ({sys.prefix})")
    for module in (forker._worker, forker._parser, forker._wsgi):
        if not str(module.__file__).endswith(".so"):
            fail(f"{module.__name__} is not compiled: {module.__file__}")
    for name in ("py.typed", "_worker.pyi", "_parser.pyi", "_wsgi.pyi"):
        if not (package / name).is_file():
            fail(f"{name} missing from {package}")
    script = Path(sys.executable).parent / "forker"
    out = subprocess.run([str(script), "--version"], capture_output=True, text=True,
                         timeout=TIMEOUT)
    if out.stdout.strip() != f"forker {forker.__version__}":
        fail(f"forker --version said {out.stdout!r} {out.stderr!r}")
    importtime = subprocess.run([sys.executable, "-X", "importtime", "-c", "import forker"],
                                capture_output=True, text=True, timeout=TIMEOUT).stderr
    took = re.search(r"\|\s+(\d+) \| forker$", importtime, re.MULTILINE)
    print(f"smoke: forker {forker.__version__} from {package}; import forker "
          f"{int(took.group(1)) / 1000 if took else float('nan'):.1f} ms")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def certificate(workdir: str) -> Tuple[str, str]:
    """(certfile, keyfile) of a self-signed certificate for 127.0.0.1."""
    cert, key = os.path.join(workdir, "cert.pem"), os.path.join(workdir, "key.pem")
    openssl = shutil.which("openssl")
    if openssl:
        subprocess.run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                        "-subj", "/CN=127.0.0.1", "-keyout", key, "-out", cert],
                       check=True, capture_output=True, timeout=TIMEOUT)
        return cert, key
    try:  # CPython's own test certificate (key and certificate in one file)
        import test
    except ImportError:
        test = None
    for name in ("certdata/keycert.pem", "keycert.pem"):
        path = os.path.join(os.path.dirname(test.__file__), name) if test else ""
        if test and os.path.isfile(path):
            return path, path
    fail("no openssl command and no test certificate in this interpreter: cannot test TLS")
    raise AssertionError  # unreachable


class Server:
    """`python -m forker` in its own session, stopped with TERM."""

    def __init__(self, workdir: str, name: str, args: List[str]) -> None:
        self.argv = [sys.executable, "-m", "forker", "--workers", "1", *args]
        self.log_path = os.path.join(workdir, f"{name}.log")
        env = dict(os.environ, PYTHONPATH=workdir)
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(self.argv, cwd=workdir, env=env,
                                         stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT, start_new_session=True)

    def log(self) -> str:
        with open(self.log_path, "rb") as log:
            return log.read().decode("utf-8", "replace")

    def fetch(self, url: str, data: Optional[bytes] = None,
              context: Optional[ssl.SSLContext] = None) -> Tuple[bytes, Dict[str, str]]:
        """(body, lower-cased header fields), retried until the server answers."""
        deadline = time.monotonic() + TIMEOUT
        while True:
            try:
                with urllib.request.urlopen(url, data=data, timeout=10, context=context) as resp:
                    body: bytes = resp.read()
                    return body, {k.lower(): v for k, v in resp.getheaders()}
            except OSError as exc:
                if self.proc.poll() is not None:
                    fail(f"the server exited ({self.proc.returncode}) before answering {url}")
                if time.monotonic() > deadline:
                    fail(f"no answer from {url}: {exc}")
                time.sleep(0.1)

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        status = self.proc.wait(TIMEOUT)
        if status != 0:
            fail(f"exit status {status} after TERM")

    def kill(self) -> None:
        if self.proc.poll() is None:  # only the server this script started, and its workers
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


def serving(workdir: str, name: str, args: List[str], check) -> None:
    server = Server(workdir, name, args)
    try:
        check(server)
        server.stop()
        print(f"smoke: {name}: {' '.join(args)}: served, TERM -> exit 0")
    except BaseException:
        sys.stderr.write(server.log())
        raise
    finally:
        server.kill()


def check_greeting(workdir: str) -> None:
    port = free_port()

    def check(server: Server) -> None:
        body, _ = server.fetch(f"http://127.0.0.1:{port}/")
        if body != b"greeting!!!":
            fail(f"greeting: unexpected body {body!r}")
    serving(workdir, "greeting", ["--bind", f"127.0.0.1:{port}"], check)


def check_native(workdir: str) -> None:
    payload = os.urandom(FILE_SIZE)  # no period: an offset error changes the checksum
    with open(os.path.join(workdir, "payload.bin"), "wb") as f:
        f.write(payload)
    digest = hashlib.sha256(payload).hexdigest()
    expected_stream = b"".join(b"%d:" % i + b"s" * (i * 97) for i in range(64))
    cert, key = certificate(workdir)
    context = ssl.create_default_context(cafile=cert)
    context.check_hostname = False  # the chain is checked; the name is ours
    plain, tls = free_port(), free_port()

    def check(server: Server) -> None:
        for base, ctx in ((f"http://127.0.0.1:{plain}", None), (f"https://127.0.0.1:{tls}", context)):
            body, _ = server.fetch(f"{base}/hello", context=ctx)
            words = body.split()
            if words[:3] != [b"native", b"GET", b"/hello"] or not words[3].isdigit() \
                    or int(words[3]) == server.proc.pid:
                fail(f"native handler on {base}: {body!r}")
            body, fields = server.fetch(f"{base}/stream", context=ctx)
            if fields.get("transfer-encoding") != "chunked" or body != expected_stream:
                fail(f"streamed body on {base}: {fields} {len(body)} bytes")
            body, fields = server.fetch(f"{base}/file", context=ctx)
            if fields.get("content-length") != str(FILE_SIZE) or \
                    hashlib.sha256(body).hexdigest() != digest:
                fail(f"file body on {base}: {fields}, {len(body)} bytes, sha256 "
                     f"{hashlib.sha256(body).hexdigest()} instead of {digest}")
    serving(workdir, "native", ["--bind", f"http://127.0.0.1:{plain}",
                                "--bind", f"https://127.0.0.1:{tls}",
                                "--certfile", cert, "--keyfile", key, "smoke_apps:native"], check)


def check_wsgi(workdir: str) -> None:
    port = free_port()

    def check(server: Server) -> None:
        body, _ = server.fetch(f"http://127.0.0.1:{port}/form", data=b"a=1&b=" + b"x" * 5000)
        if body != b"wsgi POST /form http a=1&b=" + b"x" * 5000:
            fail(f"WSGI application: {body[:200]!r}")
    serving(workdir, "wsgi", ["--bind", f"127.0.0.1:{port}", "smoke_apps:wsgi"], check)


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="forker-smoke-") as workdir:
        os.chdir(workdir)  # away from any checkout and its uncompiled forker/
        sys.path[:] = [p for p in sys.path if p not in ("", os.getcwd())]
        check_install()
        with open(os.path.join(workdir, "smoke_apps.py"), "w") as f:
            f.write(textwrap.dedent(APPS))
        check_greeting(workdir)
        check_native(workdir)
        check_wsgi(workdir)
    print("smoke: OK")


if __name__ == "__main__":
    main()
