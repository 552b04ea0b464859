"""README's first handler: every request gets greeting!!!

    python tests/examples/greeting.py              # all interfaces, port 8080
    python -m forker tests.examples.greeting:greeting
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from forker import serve

if TYPE_CHECKING:
    from forker._worker import Request


def greeting(request: Request) -> bytes:
    return b"greeting!!!"


if __name__ == "__main__":
    serve(greeting, ":8080")
