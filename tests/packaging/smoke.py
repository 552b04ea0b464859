"""Smoke test of an installed forker, run by the interpreter it is installed in
and from outside any checkout (tests/packaging/smoke_wheel.sh, cibuildwheel's
test-command):

    python smoke.py

Checks that the package came from that interpreter's environment with its
compiled modules, stubs and py.typed; that `forker --version` works; that
`python -m forker --bind 127.0.0.1:PORT --workers 1` answers greeting!!!; and
that TERM stops it with exit status 0. Standard library only."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

TIMEOUT = 60.0  # generous: wheels are also tested under emulation


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


def get(url: str, deadline: float, proc: subprocess.Popen[bytes]) -> bytes:
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                body: bytes = response.read()
                return body
        except OSError as exc:
            if proc.poll() is not None:
                fail(f"the server exited ({proc.returncode}) before answering")
            if time.monotonic() > deadline:
                fail(f"no answer from {url}: {exc}")
            time.sleep(0.1)


def check_serving(workdir: str) -> None:
    port = free_port()
    argv = [sys.executable, "-m", "forker", "--bind", f"127.0.0.1:{port}", "--workers", "1"]
    log_path = os.path.join(workdir, "forker.log")
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(argv, cwd=workdir, stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        body = get(f"http://127.0.0.1:{port}/", time.monotonic() + TIMEOUT, proc)
        if body != b"greeting!!!":
            fail(f"unexpected body {body!r}")
        proc.send_signal(signal.SIGTERM)
        status = proc.wait(TIMEOUT)
        if status != 0:
            fail(f"exit status {status} after TERM")
        print(f"smoke: {' '.join(argv[1:])} answered {body!r}, TERM -> exit 0")
    except BaseException:
        with open(log_path, "rb") as log:
            sys.stderr.write(log.read().decode("utf-8", "replace"))
        raise
    finally:
        if proc.poll() is None:  # only the server this script started, and its workers
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="forker-smoke-") as workdir:
        os.chdir(workdir)  # away from any checkout and its uncompiled forker/
        sys.path[:] = [p for p in sys.path if p not in ("", os.getcwd())]
        check_install()
        check_serving(workdir)
    print("smoke: OK")


if __name__ == "__main__":
    main()
