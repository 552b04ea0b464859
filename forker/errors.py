"""Exceptions raised by forker's public API."""


class ForkerError(Exception):
    """Base class of forker's own errors."""


class ConfigError(ForkerError, ValueError):
    """An option has a bad value; the message names the option and what is allowed."""


class AppImportError(ForkerError):
    """The application named on the command line could not be loaded."""
