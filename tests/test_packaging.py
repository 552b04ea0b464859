"""What `import forker` costs and changes, and the package's one version.

Each check runs `python -c` in a fresh interpreter from the checkout's root, so
the modules a previous test imported do not hide what `import forker` pulls in."""

from __future__ import annotations

import json
import re
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

import forker

ROOT = Path(__file__).resolve().parent.parent

# What `import forker` must leave for later: the master, the compiled engine and
# the parser, and the standard modules only they need.
HEAVY = [
    "forker.master", "forker.config", "forker.cli", "forker._worker", "forker._parser",
    "forker.wsgi", "forker.logs", "socket", "ssl", "logging", "threading", "subprocess",
    "multiprocessing", "asyncio", "argparse", "mmap", "typing",
]


def python(code: str, *flags: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *flags, "-c", code], cwd=ROOT,
                          capture_output=True, text=True, timeout=60, check=True)


def import_time_ms() -> float:
    """The cumulative time of `import forker` as -X importtime reports it."""
    err = python("import forker", "-X", "importtime").stderr
    for line in err.splitlines():
        match = re.match(r"import time:\s+\d+ \|\s+(\d+) \| forker$", line)
        if match:
            return int(match.group(1)) / 1000
    raise AssertionError(f"no line for forker in:\n{err}")


def test_import_takes_under_50_ms():
    times = sorted(import_time_ms() for _ in range(5))
    print(f"import forker: median {statistics.median(times):.1f} ms of {times}")
    assert statistics.median(times) < 50, times


def test_import_pulls_in_no_heavy_module():
    code = ("import sys, json; before = set(sys.modules); import forker; "
            "print(json.dumps(sorted(set(sys.modules) - before)))")
    loaded = json.loads(python(code).stdout)
    assert "forker" in loaded
    assert not [name for name in HEAVY if name in loaded], loaded


def test_a_worker_imports_neither_typing_nor_random():
    """What a master and a WSGI worker import leaves typing (0.6 MiB) and random
    (0.1 MiB) out. Run with -S: site's .pth files may import them beforehand."""
    code = ("import sys, json; sys.path.insert(0, '.'); before = set(sys.modules); "
            "import forker.cli, forker.master, forker.worker, forker._worker, forker.wsgi; "
            "print(json.dumps(sorted(set(sys.modules) - before)))")
    loaded = json.loads(python(code, "-S").stdout)
    assert "forker.wsgi" in loaded
    assert "typing" not in loaded and "random" not in loaded, loaded


def test_import_has_no_side_effects():
    code = """if True:
        import json, logging, os, signal, sys, threading
        def umask():
            mask = os.umask(0)
            os.umask(mask)
            return mask
        def state():
            return {
                "signals": {s.name: repr(signal.getsignal(s)) for s in signal.Signals
                            if s not in (signal.SIGKILL, signal.SIGSTOP)},
                "fds": sorted(os.listdir("/proc/self/fd")),
                "threads": threading.active_count(),
                "cwd": os.getcwd(),
                "environ": dict(os.environ),
                "umask": umask(),
                "handlers": [repr(h) for h in logging.root.handlers],
                "forker_loggers": sorted(n for n in logging.root.manager.loggerDict
                                         if n.startswith("forker")),
            }
        before = state()
        import forker
        after = state()
        print(json.dumps([before, after]))
    """
    before, after = json.loads(python(code).stdout)
    assert before == after


def test_import_fails_early_off_linux():
    code = "import sys; sys.platform = 'darwin'; import forker"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 1
    assert "ImportError: forker runs on Linux only" in out.stderr
    assert "'darwin'" in out.stderr


def test_version_lives_in_one_place():
    namespace: dict = {}
    exec((ROOT / "forker" / "_version.py").read_text(), namespace)
    assert forker.__version__ == namespace["__version__"]
    assert re.fullmatch(r"\d+\.\d+\.\d+((a|b|rc)\d+)?(\.dev\d+)?", forker.__version__)
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert 'dynamic = ["version"]' in pyproject
    assert 'version = {attr = "forker._version.__version__"}' in pyproject


def test_installed_metadata_matches():
    from importlib import metadata

    try:
        installed = metadata.version("forker")
    except metadata.PackageNotFoundError:
        pytest.skip("forker is not installed, only importable")
    assert installed == forker.__version__
