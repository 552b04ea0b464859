#!/usr/bin/env bash
# Runs the test suite against extensions built with AddressSanitizer and UBSan.
#
#   tests/sanitize.sh                 the hardening, engine and parser tests
#   tests/sanitize.sh tests           the whole suite (slower)
#   tests/sanitize.sh tests/test_x.py -k name    any pytest arguments
#
# The build happens in a copy of the working tree (tracked and untracked files,
# not ignored ones), so the developer's in-place extensions are left alone.
#
# Python is not built with ASan, so the runtime must be preloaded (LD_PRELOAD)
# into every Python process, and only into those: ps, curl and others hang with
# it. A wrapper script preloads it and runs Python; a sitecustomize makes
# sys.executable name the wrapper (so servers started by the tests get the
# runtime too) and takes LD_PRELOAD out of the environment children inherit.
# Leak detection is off: the interpreter keeps memory until exit by design.
#
# Every report goes to a file, and the script fails when any exists even if the
# tests passed: a worker killed by a sanitizer in the background may not fail a
# test. clang is preferred: its UBSan runs inside the ASan runtime and honours
# log_path. With gcc, libubsan is a second runtime whose reports go to the
# worker's stderr whatever log_path says (the preloaded libasan interposes its
# report-path setter), so they count only when they make a test fail.
#
# Environment: PYTHON (default python3), CC (default clang, else gcc), ASAN_LIB (the ASan
# runtime to preload; default: asked from $CC), ASAN_OPTIONS_EXTRA (appended to
# ASAN_OPTIONS), KEEP=1 keeps the copy and the reports.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
PYTHON=${PYTHON:-python3}
if [ -z "${CC:-}" ]; then
    if command -v clang >/dev/null 2>&1; then CC=clang; else CC=gcc; fi
fi
export CC
case "$("$CC" --version 2>/dev/null | head -n 1)" in
*clang*) ;;
*) echo "sanitize: $CC: UBSan reports reach the worker's stderr, not the report files" >&2 ;;
esac

if [ $# -eq 0 ]; then
    set -- tests/test_limits.py tests/test_smuggling.py tests/test_robustness.py \
        tests/test_engine.py tests/test_parser.py tests/test_parser_props.py \
        tests/test_wsgi_server.py tests/test_proxy_protocol.py
fi

if [ -z "${ASAN_LIB:-}" ]; then
    case "$("$CC" --version 2>/dev/null | head -n 1)" in
    *clang*)
        ASAN_LIB=$("$CC" -print-file-name="libclang_rt.asan-$(uname -m).so")
        # per-target runtime directories (newer LLVM) drop the arch suffix
        [ -e "$ASAN_LIB" ] || ASAN_LIB=$("$CC" -print-file-name=libclang_rt.asan.so)
        ;;
    *) ASAN_LIB=$("$CC" -print-file-name=libasan.so) ;;
    esac
fi
if [ ! -e "$ASAN_LIB" ]; then
    echo "sanitize: no ASan runtime found for $CC (got '$ASAN_LIB'); set ASAN_LIB" >&2
    exit 2
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/forker-sanitize.XXXXXX")
if [ "${KEEP:-0}" = 1 ]; then
    echo "sanitize: keeping $WORK" >&2
else
    trap 'rm -rf "$WORK"' EXIT
fi
TREE="$WORK/tree"
REPORTS="$WORK/reports"
mkdir -p "$TREE" "$REPORTS" "$WORK/bin" "$WORK/site"
# workers that switch to another user (the --user tests) must still read the
# tree and write their reports
chmod 755 "$WORK"
chmod 1777 "$REPORTS"

cd "$ROOT"
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    git ls-files -z --cached --others --exclude-standard |
        while IFS= read -r -d '' f; do [ -e "$f" ] && printf '%s\0' "$f"; done |
        tar --null -T - -cf - | tar -xf - -C "$TREE"
else
    tar --exclude=./build --exclude='*.so' --exclude='*.o' -cf - . | tar -xf - -C "$TREE"
fi

cd "$TREE"
if ! "$PYTHON" -c 'import Cython' 2>/dev/null; then
    echo "sanitize: the build needs Cython importable by $PYTHON (pip install 'Cython>=3.0')" >&2
    exit 2
fi
echo "sanitize: building with FORKER_SANITIZE=1 in $TREE" >&2
if ! FORKER_SANITIZE=1 "$PYTHON" setup.py build_ext --inplace >"$WORK/build.log" 2>&1; then
    cat "$WORK/build.log" >&2
    echo "sanitize: build failed" >&2
    exit 2
fi

export ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:log_path=$REPORTS/asan${ASAN_OPTIONS_EXTRA:+:$ASAN_OPTIONS_EXTRA}"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:log_path=$REPORTS/ubsan"

# The options are written into the wrapper too: some tests start servers with
# a scrubbed environment (systemd-socket-activate passes only what it is told).
REAL_PYTHON=$("$PYTHON" -c 'import sys; print(sys.executable)')
PY="$WORK/bin/python"
printf '#!%s\nLD_PRELOAD=%q ASAN_OPTIONS=%q UBSAN_OPTIONS=%q exec %q "$@"\n' \
    "$BASH" "$ASAN_LIB" "$ASAN_OPTIONS" "$UBSAN_OPTIONS" "$REAL_PYTHON" >"$PY"
chmod +x "$PY"
cat >"$WORK/site/sitecustomize.py" <<'PYEOF'
import os
import sys

if os.environ.get("FORKER_SANITIZE_PYTHON"):
    os.environ.pop("LD_PRELOAD", None)
    sys.executable = os.environ["FORKER_SANITIZE_PYTHON"]
PYEOF

export FORKER_SANITIZE_PYTHON="$PY"
export FORKER_SANITIZED=1
export PYTHONPATH="$TREE:$WORK/site${PYTHONPATH:+:$PYTHONPATH}"

# The extensions must be the ones just built, and carry the sanitizers.
"$PY" - "$TREE" <<'PYEOF'
import sys

import forker._parser
import forker._worker

for mod in (forker._parser, forker._worker):
    assert mod.__file__.startswith(sys.argv[1] + "/"), f"{mod.__name__} from {mod.__file__}"
    with open(mod.__file__, "rb") as f:
        assert b"__asan_report" in f.read(), f"{mod.__file__} is not instrumented"
PYEOF

status=0
"$PY" -m pytest -p no:cacheprovider -q "$@" || status=$?

if [ -n "$(ls -A "$REPORTS")" ]; then
    for report in "$REPORTS"/*; do
        echo "==== $report" >&2
        cat "$report" >&2
    done
    echo "sanitize: sanitizer reports above" >&2
    exit 1
fi
if [ "$status" -ne 0 ]; then
    echo "sanitize: tests failed (exit $status), no sanitizer report" >&2
    exit "$status"
fi
echo "sanitize: clean" >&2
