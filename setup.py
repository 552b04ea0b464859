"""Extension modules of forker. Metadata lives in pyproject.toml.

FORKER_DEBUG=1 builds with assertions on and without optimisation;
FORKER_SANITIZE=1 builds with AddressSanitizer and UBSan (run the tests with
LD_PRELOAD set to the ASan runtime, see .ci/run)."""

import os
import sys

from setuptools import Extension, setup

if not sys.platform.startswith("linux"):
    sys.exit("forker runs on Linux only: its worker loop is built on epoll, accept4 and fork.")

from Cython.Build import cythonize  # noqa: E402  (after the platform check on purpose)

DEBUG = os.environ.get("FORKER_DEBUG") == "1"
SANITIZE = os.environ.get("FORKER_SANITIZE") == "1"

cflags = ["-Wall", "-Wextra", "-Wno-unused-parameter", "-Wno-missing-field-initializers"]
ldflags = []
macros = []
if DEBUG or SANITIZE:
    cflags += ["-O1", "-g", "-fno-omit-frame-pointer", "-UNDEBUG"]
    macros.append(("FORKER_DEBUG", "1"))
else:
    cflags += ["-O2"]
if SANITIZE:
    cflags += ["-fsanitize=address,undefined", "-fno-sanitize-recover=undefined"]
    ldflags += ["-fsanitize=address,undefined"]


def ext(name, sources, libraries=()):
    return Extension(
        name,
        sources=sources,
        include_dirs=["csrc"],
        extra_compile_args=cflags,
        extra_link_args=ldflags,
        define_macros=macros,
        libraries=list(libraries),
    )


PARSER_C = ["csrc/fk_parse.c", "csrc/fk_chunked.c"]
ENGINE_C = PARSER_C + ["csrc/fk_write.c", "csrc/fk_buf.c", "csrc/fk_conn.c", "csrc/fk_loop.c", "csrc/fk_accept.c",
                       "csrc/fk_input.c", "csrc/fk_output.c", "csrc/fk_tls.c", "csrc/fk_body.c",
                       "csrc/fk_proxy.c", "csrc/fk_peers.c", "csrc/fk_spares.c",
                       "csrc/fk_ws.c", "csrc/fk_loop_ws.c"]

extensions = [
    ext("forker._parser", ["forker/_parser.pyx"] + PARSER_C),
    # libdl: OpenSSL is looked up at run time (csrc/fk_tls.c), never linked;
    # _worker.pyx includes forker/engine/*.pxi and has its declarations in
    # forker/_worker.pxd, which forker/_wsgi.pyx cimports (cythonize follows both)
    ext("forker._worker", ["forker/_worker.pyx"] + ENGINE_C, libraries=["dl"]),
    ext("forker._wsgi", ["forker/_wsgi.pyx"]),
    ext("forker._asgi", ["forker/_asgi.pyx"]),
]

setup(
    ext_modules=cythonize(
        extensions,
        # the generated C (tens of thousands of lines) stays out of the sources
        build_dir="build/cython",
        language_level=3,
        compiler_directives={"boundscheck": False, "wraparound": False, "cdivision": True},
    )
)
