"""TLS as the master sees it: which listeners serve HTTPS, and the certificate
files checked before any worker is forked. Each worker then loads the files
itself, after fork, into an OpenSSL context of its own (forker._worker, over
csrc/fk_tls.c), so new workers started by HUP read renewed files.

A bind entry may carry a scheme: "https://:8443" serves TLS, "http://:8080"
plain HTTP; an entry without one serves TLS exactly when certfile (or
ssl_context) is set.

ssl_context hands in a Python ssl.SSLContext instead of the files: the loop
uses the OpenSSL context inside it (the same library, Python's own), found at
the start of CPython's object and checked against the context's options and
verify mode before use. Callbacks into Python (sni_callback, keylog, message
and PSK callbacks) cannot run in the loop and are refused where visible."""

from __future__ import annotations

import os
import socket
import sys

from .errors import ConfigError
from .sockets import FD, Address, parse_address

TYPE_CHECKING = False  # not typing's: a worker process does not import typing
if TYPE_CHECKING:
    from typing import Any, List, Optional, Sequence, Tuple

SCHEMES = ("http", "https")

# Session tickets are encrypted with these keys. Made in the master before any
# fork, they are the same in all its workers, so a client resumes its session
# on whichever worker accepts it (as with nginx); check() makes new ones at
# start and on each reload, for the workers forked from then on.
_ticket_keys = os.urandom(80)


def ticket_keys() -> bytes:
    """The session ticket keys of the workers forked now (80 bytes)."""
    return _ticket_keys


def split_scheme(text: str) -> Tuple[Optional[str], str]:
    """'https://:8443' -> ('https', ':8443'); ':8080' -> (None, ':8080')."""
    for scheme in SCHEMES:
        if text.startswith(scheme + "://"):
            return scheme, text[len(scheme) + 3:]
    return None, text


def _default_scheme(config: Any) -> str:
    return "https" if config.certfile or config.ssl_context is not None else "http"


def bind_schemes(config: Any) -> List[str]:
    """The scheme of each config.bind entry, in order."""
    default = _default_scheme(config)
    return [split_scheme(text)[0] or default for text in config.bind]


def listener_schemes(config: Any, sockets: Sequence[socket.socket], source: str) -> List[str]:
    """The scheme of each listening socket a worker serves. Sockets bound from
    config.bind come in its order; inherited ones (an upgrade, systemd) are
    matched to the bind entry of their address, else get the default."""
    schemes = bind_schemes(config)
    if source == "bind" and len(schemes) == len(sockets):
        return schemes
    addresses = [parse_address(text) for text in config.bind]
    default = _default_scheme(config)
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
    work: what each worker would otherwise find out only after fork. When they
    can, make new session ticket keys for the workers forked from now on."""
    https = [text for text in config.bind if split_scheme(text)[0] == "https"]
    if config.ssl_context is not None:
        for name in ("certfile", "keyfile", "ca_certs"):
            if getattr(config, name):
                raise ConfigError(f"{name}: set in the ssl_context instead: the two exclude "
                                  "each other")
        _check_context(context_from(config.ssl_context))
        _new_ticket_keys()
        return
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
    from ._worker import tls_library

    try:
        tls_library()
    except OSError as exc:
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
    _new_ticket_keys()


def _new_ticket_keys() -> None:
    global _ticket_keys
    _ticket_keys = os.urandom(80)


def context_from(value: Any) -> Any:
    """The ssl.SSLContext of the ssl_context option (calling it if it is a
    function), checked for what forker's loop can serve with. Raises
    ConfigError."""
    import ssl

    context = value() if callable(value) else value
    if not isinstance(context, ssl.SSLContext):
        raise ConfigError(f"ssl_context: expected an ssl.SSLContext, the function returned "
                          f"{context!r}")
    if sys.implementation.name != "cpython" or not (3, 9) <= sys.version_info[:2] <= (3, 14):
        raise ConfigError("ssl_context: forker takes the OpenSSL context out of an "
                          "ssl.SSLContext on CPython 3.9 to 3.14 only; use certfile and "
                          "keyfile instead")
    if context.protocol not in (ssl.PROTOCOL_TLS_SERVER, ssl.PROTOCOL_TLS):
        raise ConfigError(f"ssl_context: {context.protocol!r} is not a server protocol; "
                          "make it with ssl.PROTOCOL_TLS_SERVER")
    # Python's callbacks look for the Python socket object behind an OpenSSL
    # connection, and forker's connections have none.
    for attribute in ("sni_callback", "keylog_filename", "_msg_callback"):
        if getattr(context, attribute, None) is not None:
            raise ConfigError(f"ssl_context: {attribute} is not supported: callbacks into "
                              "Python cannot run in forker's loop")
    return context


def _check_context(context: Any) -> None:
    """A handshake in memory, so that a context without a certificate fails
    now and not at each client's handshake."""
    import ssl

    from ._worker import check_ssl_context

    try:
        check_ssl_context(context)
    except OSError as exc:
        raise ConfigError(f"ssl_context: TLS is not available: {exc}") from None
    if context.verify_mode == ssl.CERT_REQUIRED:
        return  # a client without a certificate would fail it anyway
    client_context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client_context.check_hostname, client_context.verify_mode = False, ssl.CERT_NONE
    client_in, client_out, server_in, server_out = (ssl.MemoryBIO() for _ in range(4))
    client = client_context.wrap_bio(client_in, client_out)
    server = context.wrap_bio(server_in, server_out, server_side=True)
    done = [False, False]
    for _ in range(8):
        for index, (side, outgoing, peer_in) in enumerate(
                ((client, client_out, server_in), (server, server_out, client_in))):
            if not done[index]:
                try:
                    side.do_handshake()
                    done[index] = True
                except ssl.SSLWantReadError:
                    pass
                except ssl.SSLError as exc:
                    if side is server:
                        raise ConfigError(f"ssl_context: a test handshake fails: "
                                          f"{_reason(exc)} (is a certificate loaded?)") from None
                    return  # the client's own limits: nothing to say about the server
            data = outgoing.read()
            if data:
                peer_in.write(data)
        if all(done):
            return


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
