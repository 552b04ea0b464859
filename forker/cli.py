"""The command line: `forker [OPTIONS] [APP]`, also `python -m forker`, and
`forker stats --pid PIDFILE` (forker/metrics.py).

The flags are generated from forker.config.OPTIONS, so each one is the same
setting as the `serve(...)` keyword and the FORKER_<NAME> environment variable
of that name. Precedence, lowest first: defaults, FORKER_* variables, the
--config file, command-line flags.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import traceback

from ._version import __version__
from .config import ENV_PREFIX, OPTIONS, OPTIONS_BY_NAME, Config
from .errors import AppImportError, ConfigError

TYPE_CHECKING = False  # not typing's: a worker process does not import typing
if TYPE_CHECKING:
    from typing import Any, Dict, List, NoReturn, Optional

# gunicorn config-file spellings that differ from ours, so its files mostly work.
GUNICORN_NAMES = {
    "accesslog": "access_log",
    "errorlog": "error_log",
    "loglevel": "log_level",
}

DESCRIPTION = """\
Serve APP with a prefork HTTP/1.1 server.

APP is MODULE:NAME, MODULE:FACTORY() or MODULE:FACTORY(literal args), or MODULE
(its `application`, else its `app`). Without APP, a built-in greeting is served.
"""

EPILOG = f"""\
`forker stats --pid PIDFILE` prints a running server's per-worker counters.

Every option can also be set by a {ENV_PREFIX}<NAME> environment variable
({ENV_PREFIX}WORKERS=4, {ENV_PREFIX}ACCESS_LOG=-) or in the --config file
(workers = 4). Flags override the config file, which overrides the environment.
"""


def _shown_default(default: Any) -> str:
    """A default as --help shows it: quoted and escaped when the help
    formatter, which folds whitespace, would change it ("ok\\n" is 'ok\\n')."""
    shown = ",".join(map(str, default)) if isinstance(default, list) else str(default)
    if shown != " ".join(shown.split()) or not shown.isprintable():
        return repr(shown)
    return shown


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="forker", description=DESCRIPTION, epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("app", nargs="?", metavar="APP",
                        help="the application to serve (default: the built-in greeting)")
    parser.add_argument("--config", metavar="FILE",
                        help="a Python file of settings: module-level names such as workers = 4")
    parser.add_argument("--version", action="version", version=f"forker {__version__}")
    for option in OPTIONS:
        if option.flag is None:
            continue
        text = option.help.replace("%", "%%")  # argparse %-formats help strings
        kwargs: Dict[str, Any] = {"dest": option.name, "default": argparse.SUPPRESS}
        default = None if callable(option.default) else option.default
        if isinstance(default, bool) or option.switch:
            kwargs["action"] = argparse.BooleanOptionalAction
        else:
            kwargs["metavar"] = option.metavar or option.name.upper()
            if option.repeatable:
                kwargs["action"] = "append"
                text += " May be repeated."
            if default not in (None, "", []):
                text += f" [default: {_shown_default(default)}]".replace("%", "%%")
        parser.add_argument(option.flag, help=text, **kwargs)
    return parser


def _message(option_name: str, exc: ConfigError) -> str:
    text = str(exc)
    prefix = option_name + ": "
    return text[len(prefix):] if text.startswith(prefix) else text


def collect(args: argparse.Namespace, settings: Optional[Dict[str, Any]] = None,
            environ: Optional[Dict[str, str]] = None) -> Config:
    """Defaults < FORKER_* environment < settings (of the --config file) < flags.
    A bad value raises ConfigError naming where it came from."""
    environ = dict(os.environ) if environ is None else environ
    config = Config()
    for option in OPTIONS:
        variable = ENV_PREFIX + option.name.upper()
        if variable in environ:
            try:
                config.update({option.name: environ[variable]})
            except ConfigError as exc:
                raise ConfigError(f"environment variable {variable}: "
                                  f"{_message(option.name, exc)}") from None
    for key, value in (settings or {}).items():
        name = GUNICORN_NAMES.get(key, key)
        if name in OPTIONS_BY_NAME:
            try:
                config.update({name: value})
            except ConfigError as exc:
                raise ConfigError(f"{args.config}: {key}: {_message(name, exc)}") from None
    given = vars(args)
    for option in OPTIONS:
        if option.flag is not None and option.name in given:
            try:
                config.update({option.name: given[option.name]})
            except ConfigError as exc:
                raise ConfigError(f"argument {option.flag}: "
                                  f"{_message(option.name, exc)}") from None
    return config


def configure(args: argparse.Namespace, parser: argparse.ArgumentParser,
              settings: Optional[Dict[str, Any]] = None,
              environ: Optional[Dict[str, str]] = None) -> Config:
    """collect(), with errors reported by the parser (exit status 2)."""
    try:
        return collect(args, settings, environ)
    except ConfigError as exc:
        parser.error(str(exc))


def read_config_file(path: str) -> Dict[str, Any]:
    """The public module-level names a Python settings file defines."""
    if not os.path.isfile(path):
        raise ConfigError(f"argument --config: no such file: {path}")
    import runpy

    try:
        namespace = runpy.run_path(path, run_name="__config__")
    except Exception:
        raise ConfigError(f"argument --config: {path} raised an error:\n"
                          f"{traceback.format_exc()}") from None
    return {key: value for key, value in namespace.items() if not key.startswith("_")}


def _fail(message: str) -> NoReturn:
    sys.stderr.write(f"forker: error: {message}\n")
    raise SystemExit(2)


def _check_importable(spec: str) -> None:
    """Fail early, in the command line, on an APP whose module does not exist;
    anything else about it is reported by whoever imports it (see --preload)."""
    module = spec.partition(":")[0].strip()
    if not module:
        raise AppImportError(f"{spec!r}: expected MODULE, MODULE:NAME or MODULE:FACTORY(ARGS)")
    try:
        found = importlib.util.find_spec(module)
    except ModuleNotFoundError:
        found = None
    except Exception:
        return
    if found is None:
        raise AppImportError(f"no module named {module!r} (looked in {os.getcwd()})")


def main(argv: Optional[List[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["stats"]:  # `forker stats --pid PIDFILE`; an APP named stats is out of luck
        from .metrics import main as stats

        return stats(argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings = read_config_file(args.config) if args.config is not None else {}
    except ConfigError as exc:
        parser.error(str(exc))
    config = configure(args, parser, settings)
    spec = args.app if args.app is not None else settings.get("wsgi_app")  # gunicorn's name

    from . import logs
    from .app import greeting

    logs.setup(config)
    if config.chdir:
        try:
            os.chdir(config.chdir)
        except OSError as exc:
            _fail(f"argument --chdir: cannot change directory to {config.chdir!r}: {exc.strerror}")
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    app: Any
    if spec is None:
        app = greeting
        config.update({"interface": "native"})  # the greeting is a native handler
    else:
        app = spec  # imported by the master (--preload) or by each worker
        try:
            _check_importable(spec)
        except AppImportError as exc:
            _fail(f"cannot load the application {spec!r}: {exc}")
    options = config.as_dict()
    options["chdir"] = None  # done: a reload must not apply a relative path twice

    def reload_options() -> Dict[str, Any]:
        """HUP: the environment and the --config file again, under the same flags."""
        fresh = collect(args, read_config_file(args.config) if args.config else {})
        fresh.update({"chdir": None, "interface": config.interface})
        return fresh.as_dict()

    from .master import run

    try:
        status = run(app, options, reload_options)
    except AppImportError as exc:  # --preload: the master imports it
        _fail(f"cannot load the application {spec!r}: {exc}")
    except ConfigError as exc:  # found by the master: certificate files
        _fail(str(exc))
    return status if isinstance(status, int) else 0
