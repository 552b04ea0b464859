"""forker: a prefork HTTP/1.1 server with a Cython/C worker loop.

    from forker import serve

    def greeting(request):
        return b"greeting!!!"

    serve(greeting, ":8080")
"""

from __future__ import annotations

import sys

if not sys.platform.startswith("linux"):
    raise ImportError(
        "forker runs on Linux only: its worker loop is built on epoll, accept4 and "
        f"fork (this platform is {sys.platform!r})."
    )

from ._version import __version__  # noqa: E402
from .response import Response  # noqa: E402

TYPE_CHECKING = False  # not typing's: `import forker` does not import typing
if TYPE_CHECKING:
    from typing import Any

    from .master import Forker

__all__ = ["serve", "Forker", "Response", "__version__"]


def __getattr__(name: str) -> Any:
    """Forker, imported on first use so that `import forker` stays cheap."""
    if name == "Forker":
        from .master import Forker

        return Forker
    raise AttributeError(f"module 'forker' has no attribute {name!r}")


def serve(app: Any, address: Any = None, **options: Any) -> int:
    """Serve app on address (":8080", "127.0.0.1:8080", "[::1]:8080",
    "unix:/run/app.sock") with one worker process per CPU core until stopped.

    Keyword options are those of forker.config.OPTIONS (workers=4, ...).
    Imported lazily so that `import forker` stays cheap and side-effect free."""
    from .master import run

    if address is not None:
        options["bind"] = address
    return run(app, options)
