"""The command line: `forker [OPTIONS] [APP]`, also `python -m forker`.

The flags are generated from forker.config.OPTIONS, so each one is the same
setting as the `serve(...)` keyword and the FORKER_<NAME> environment variable
of that name. Precedence, lowest first: defaults, FORKER_* variables, the
--config file, command-line flags.
"""

from __future__ import annotations

import argparse
import os
import runpy
import sys
import traceback
from typing import Any, Dict, List, NoReturn, Optional

from ._version import __version__
from .config import ENV_PREFIX, OPTIONS, OPTIONS_BY_NAME, Config
from .errors import AppImportError, ConfigError

# gunicorn config-file spellings that differ from ours, so its files mostly work.
GUNICORN_NAMES = {
    "accesslog": "access_log",
    "errorlog": "error_log",
    "loglevel": "log_level",
    "pidfile": "pid",
}

DESCRIPTION = """\
Serve APP with a prefork HTTP/1.1 server.

APP is MODULE:NAME, MODULE:FACTORY() or MODULE:FACTORY(literal args), or MODULE
(its `application`, else its `app`). Without APP, a built-in greeting is served.
"""

EPILOG = f"""\
Every option can also be set by a {ENV_PREFIX}<NAME> environment variable
({ENV_PREFIX}WORKERS=4, {ENV_PREFIX}ACCESS_LOG=-) or in the --config file
(workers = 4). Flags override the config file, which overrides the environment.
"""


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
        if isinstance(default, bool):
            kwargs["action"] = argparse.BooleanOptionalAction
        else:
            kwargs["metavar"] = option.metavar or option.name.upper()
            if option.repeatable:
                kwargs["action"] = "append"
                text += " May be repeated."
            if default not in (None, "", []):
                shown = ",".join(map(str, default)) if isinstance(default, list) else default
                text += f" [default: {shown}]".replace("%", "%%")
        parser.add_argument(option.flag, help=text, **kwargs)
    return parser


def _message(option_name: str, exc: ConfigError) -> str:
    text = str(exc)
    prefix = option_name + ": "
    return text[len(prefix):] if text.startswith(prefix) else text


def configure(args: argparse.Namespace, parser: argparse.ArgumentParser,
              settings: Optional[Dict[str, Any]] = None,
              environ: Optional[Dict[str, str]] = None) -> Config:
    """Defaults < FORKER_* environment < settings (of the --config file) < flags.
    A bad value exits with status 2, naming where it came from."""
    environ = dict(os.environ) if environ is None else environ
    config = Config()
    for option in OPTIONS:
        variable = ENV_PREFIX + option.name.upper()
        if variable in environ:
            try:
                config.update({option.name: environ[variable]})
            except ConfigError as exc:
                parser.error(f"environment variable {variable}: {_message(option.name, exc)}")
    if settings:
        for key, value in settings.items():
            name = GUNICORN_NAMES.get(key, key)
            if name in OPTIONS_BY_NAME:
                try:
                    config.update({name: value})
                except ConfigError as exc:
                    parser.error(f"{args.config}: {key}: {_message(name, exc)}")
    given = vars(args)
    for option in OPTIONS:
        if option.flag is not None and option.name in given:
            try:
                config.update({option.name: given[option.name]})
            except ConfigError as exc:
                parser.error(f"argument {option.flag}: {_message(option.name, exc)}")
    return config


def _read_config_file(path: str, parser: argparse.ArgumentParser) -> Dict[str, Any]:
    if not os.path.isfile(path):
        parser.error(f"argument --config: no such file: {path}")
    try:
        namespace = runpy.run_path(path, run_name="__config__")
    except Exception:
        parser.error(f"argument --config: {path} raised an error:\n{traceback.format_exc()}")
    return {key: value for key, value in namespace.items() if not key.startswith("_")}


def _fail(message: str) -> NoReturn:
    sys.stderr.write(f"forker: error: {message}\n")
    raise SystemExit(2)


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    settings = _read_config_file(args.config, parser) if args.config is not None else {}
    config = configure(args, parser, settings)
    spec = args.app if args.app is not None else settings.get("wsgi_app")  # gunicorn's name

    from . import logs
    from .app import as_handler, greeting, load

    logs.setup(config)
    if spec is None:
        if config.chdir:
            try:
                os.chdir(config.chdir)
            except OSError as exc:
                _fail(f"argument --chdir: cannot change directory to {config.chdir!r}: {exc.strerror}")
        app: Any = greeting
        config.update({"interface": "native"})  # the greeting is a native handler
    else:
        try:
            app = load(spec, config.chdir)
        except AppImportError as exc:
            _fail(f"cannot load the application {spec!r}: {exc}")
    handler = as_handler(app, config)

    from .master import run

    status = run(handler, config.as_dict())
    return status if isinstance(status, int) else 0
