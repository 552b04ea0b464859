"""TLS as the master sees it: which listeners serve HTTPS, and the certificate
files checked before any worker is forked. Each worker then loads the files
itself, after fork, into an OpenSSL context of its own (forker._worker, over
csrc/fk_tls.c), so new workers started by HUP read renewed files.

A bind entry may carry a scheme: "https://:8443" serves TLS, "http://:8080"
plain HTTP; an entry without one serves TLS exactly when certfile is set."""

from __future__ import annotations

import socket
from typing import Any, List, Optional, Sequence, Tuple

from .errors import ConfigError
from .sockets import FD, Address, parse_address

SCHEMES = ("http", "https")


def split_scheme(text: str) -> Tuple[Optional[str], str]:
    """'https://:8443' -> ('https', ':8443'); ':8080' -> (None, ':8080')."""
    for scheme in SCHEMES:
        if text.startswith(scheme + "://"):
            return scheme, text[len(scheme) + 3:]
    return None, text


def bind_schemes(config: Any) -> List[str]:
    """The scheme of each config.bind entry, in order."""
    default = "https" if config.certfile else "http"
    return [split_scheme(text)[0] or default for text in config.bind]


def listener_schemes(config: Any, sockets: Sequence[socket.socket], source: str) -> List[str]:
    """The scheme of each listening socket a worker serves. Sockets bound from
    config.bind come in its order; inherited ones (an upgrade, systemd) are
    matched to the bind entry of their address, else get the default."""
    schemes = bind_schemes(config)
    if source == "bind" and len(schemes) == len(sockets):
        return schemes
    addresses = [parse_address(text) for text in config.bind]
    default = "https" if config.certfile else "http"
    result = []
    for sock in sockets:
        matches = [scheme for scheme, address in zip(schemes, addresses)
                   if _same(address, sock)]
        if not matches and sock.family != socket.AF_UNIX:
            port = sock.getsockname()[1]
            matches = [scheme for scheme, address in zip(schemes, addresses)
                       if address.family not in (FD, socket.AF_UNIX)
                       and address.target[1] == port]  # type: ignore[index]
        result.append(matches[0] if len(set(matches)) == 1 else default)
    return result


def _same(address: Address, sock: socket.socket) -> bool:
    if address.family == FD:
        return address.target == sock.fileno()
    if address.family != sock.family:
        return False
    name = sock.getsockname()
    if sock.family == socket.AF_UNIX:
        return bool(address.target == name)
    return tuple(address.target) == tuple(name[:2])  # type: ignore[arg-type]


def check(config: Any) -> None:
    """Raise ConfigError naming the option and file when the TLS settings cannot
    work: what each worker would otherwise find out only after fork."""
    https = [text for text in config.bind if split_scheme(text)[0] == "https"]
    if not config.certfile:
        if https:
            raise ConfigError(f"bind: {https[0]} needs certfile (and keyfile)")
        for name in ("keyfile", "ca_certs"):
            if getattr(config, name):
                raise ConfigError(f"{name}: needs certfile")
        return
    if config.cert_reqs != "none" and not config.ca_certs:
        raise ConfigError(f"cert_reqs: {config.cert_reqs} needs ca_certs, the CAs that client "
                          "certificates must chain to")
    for name in ("certfile", "keyfile", "ca_certs"):
        path = getattr(config, name)
        if path is not None:
            _readable(name, path)
    try:
        from ._worker import tls_library

        tls_library()
    except (ImportError, OSError) as exc:
        raise ConfigError(f"certfile: TLS is not available: {exc}") from None
    import ssl

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    certfile, keyfile = config.certfile, config.keyfile or config.certfile
    try:
        context.load_verify_locations(cafile=certfile)  # parses every certificate in it
    except ssl.SSLError as exc:
        raise ConfigError(f"certfile: {certfile} holds no valid PEM certificate "
                          f"({_reason(exc)})") from None
    try:
        context.load_cert_chain(certfile, config.keyfile, password=_no_password)
    except ssl.SSLError as exc:
        if "KEY_VALUES_MISMATCH" in str(exc):
            raise ConfigError(f"keyfile: {keyfile} does not match the certificate in "
                              f"{certfile}") from None
        raise ConfigError(f"keyfile: {keyfile} holds no usable private key ({_reason(exc)}; "
                          "it must be PEM and unencrypted)") from None
    if config.ca_certs:
        try:
            context.load_verify_locations(cafile=config.ca_certs)
        except ssl.SSLError as exc:
            raise ConfigError(f"ca_certs: {config.ca_certs} holds no valid PEM certificate "
                              f"({_reason(exc)})") from None
    if config.ciphers:
        try:
            context.set_ciphers(config.ciphers)
        except ssl.SSLError:
            raise ConfigError(f"ciphers: no cipher matches {config.ciphers!r}") from None


def _readable(name: str, path: str) -> None:
    try:
        with open(path, "rb"):
            pass
    except OSError as exc:
        raise ConfigError(f"{name}: cannot read {path}: {exc.strerror}") from None


def _reason(exc: Exception) -> str:
    return str(getattr(exc, "reason", None) or exc)


def _no_password() -> bytes:
    """An encrypted key fails instead of prompting on the terminal."""
    return b""
