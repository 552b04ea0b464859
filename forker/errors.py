"""Exceptions raised by forker's public API, and the exit status a worker
leaves with when it cannot boot."""

WORKER_BOOT_ERROR = 3  # a worker could not load the application: not worth a fork loop


class ForkerError(Exception):
    """Base class of forker's own errors."""


class ConfigError(ForkerError, ValueError):
    """An option has a bad value; the message names the option and what is allowed."""


class BindError(ForkerError, OSError):
    """A listening socket could not be opened; the message names the address and why."""


class AppImportError(ForkerError):
    """The application named on the command line could not be loaded."""


class RequestBodyError(ForkerError, OSError):
    """A request body could not be read to its end: the client stalled (status
    408), broke the chunked coding (400), sent more than max_body_size (413) or
    closed the connection (400). Raised by reads of a streamed body; a handler
    that lets it propagate gets that status answered and the connection closed."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
