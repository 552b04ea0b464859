"""A stand-in for the engine's request object, for unit tests of forker.wsgi
and forker.logs: the same attributes, built from a raw request head."""

from __future__ import annotations

from typing import Iterator, List, Optional, Tuple


class Headers:
    """Case-insensitive lookup over the raw (name, value) pairs, in order."""

    def __init__(self, pairs: List[Tuple[str, str]]) -> None:
        self._pairs = list(pairs)

    def __iter__(self) -> Iterator[Tuple[str, str]]:
        return iter(self._pairs)

    def items(self) -> List[Tuple[str, str]]:
        return list(self._pairs)

    def __len__(self) -> int:
        return len(self._pairs)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and any(n.lower() == name.lower() for n, _ in self._pairs)

    def getall(self, name: str) -> List[str]:
        return [v for n, v in self._pairs if n.lower() == name.lower()]

    def get(self, name: str, default: Optional[str] = None) -> Optional[str]:
        values = self.getall(name)
        return values[0] if values else default

    def __getitem__(self, name: str) -> str:
        values = self.getall(name)
        if not values:
            raise KeyError(name)
        return values[0]


class Request:
    def __init__(self, method: str = "GET", target: str = "/", version: str = "HTTP/1.1",
                 headers: Optional[List[Tuple[str, str]]] = None, body: bytes = b"",
                 remote_addr: str = "127.0.0.1", remote_port: int = 40000,
                 server_addr: str = "127.0.0.1", server_port: int = 8080) -> None:
        self.method = method
        self.target = target
        self.version = version
        self.absolute_form = "://" in target and not target.startswith("/")
        host_from_target = None
        if self.absolute_form:
            rest = target.split("://", 1)[1]
            cut = min((i for i in (rest.find("/"), rest.find("?")) if i >= 0), default=len(rest))
            host_from_target, rest = rest[:cut], rest[cut:]
            target_path = rest
        else:
            target_path = target
        self.path, _, self.query = target_path.partition("?")
        if headers is None:
            headers = [("Host", "example.com")]
        self.headers = Headers(headers)
        self.body = body
        self.remote_addr = remote_addr
        self.remote_port = remote_port
        self.server_addr = server_addr
        self.server_port = server_port
        self.scheme = "http"
        self.host = host_from_target if self.absolute_form else self.headers.get("host")
        self.keep_alive = version == "HTTP/1.1"
