"""The command line: `forker [OPTIONS] [APP]`, also `python -m forker`, and
`forker stats --pid PIDFILE` (forker/metrics.py).

The flags are generated from forker.config.OPTIONS, so each one is the same
setting as the `serve(...)` keyword and the FORKER_<NAME> environment variable
of that name. Precedence, lowest first: defaults, FORKER_* variables, the
--config file, the flags of GUNICORN_CMD_ARGS then FORKER_CMD_ARGS,
command-line flags (gunicorn's order, with forker's name of its variable).
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import os
import shlex
import sys
import traceback

from . import compat
from ._version import __version__
from .config import ENV_PREFIX, OPTIONS, OPTIONS_BY_NAME, Config
from .errors import AppImportError, BindError, ConfigError
from .hooks import HookError

TYPE_CHECKING = False  # not typing's: a worker process does not import typing
if TYPE_CHECKING:
    from typing import Any, Dict, List, Mapping, NoReturn, Optional, Tuple

# read from the working directory when there is no -c: forker's own, else
# gunicorn's, which gunicorn reads by default and a project moving over has
DEFAULT_CONFIGS = ("forker.conf.py", "gunicorn.conf.py")
# Variables holding more command-line arguments, as gunicorn reads GUNICORN_CMD_ARGS:
# above the --config file, below the command line; forker's own name last, so it
# wins over gunicorn's. (No option is named cmd_args: tests/test_gunicorn_env.py.)
CMD_ARGS_VARIABLES = ("GUNICORN_CMD_ARGS", ENV_PREFIX + "CMD_ARGS")

# gunicorn's flags for forker's options (forker/compat.py maps the rest).
ALIASES = {
    "bind": ("-b",), "workers": ("-w",), "timeout": ("-t",), "pidfile": ("-p",),
    "user": ("-u",), "group": ("-g",), "proc_name": ("-n",),
    "access_log": ("--access-logfile",), "error_log": ("--error-logfile", "--log-file"),
    "access_log_format": ("--access-logformat",),
    "limit_request_field_size": ("--limit-request-field_size",),
}
GUNICORN_DEST = "gunicorn."  # argparse dest prefix of the flags compat.SETTINGS adds

# Help of gunicorn's flags that forker honours through compat.EXTRAS.
EXTRA_HELP = {
    "config": "A Python file of settings (a gunicorn.conf.py works): module-level names "
              "such as workers = 4; python:MODULE for a module's. Default: "
              "./forker.conf.py when it exists, else ./gunicorn.conf.py.",
    "worker_class": "gunicorn's worker class: sync and gthread are forker's worker (handler "
                    "threads from --threads), asgi and uvicorn's workers its ASGI interface; "
                    "any other is refused.",
    "daemon": "Detach from the terminal and run in the background (standard streams to "
              "/dev/null unless -R).",
    "raw_env": "Set the environment variable KEY=VALUE in the master and the workers. "
               "May be repeated.",
    "pythonpath": "Comma-separated directories to put first on sys.path.",
    "umask": "gunicorn's umask, such as 0o22 or 022: unix sockets are created with "
             "mode 0o777 & ~UMASK (as --unix-socket-mode).",
    "enable_stdio_inheritance": "With --daemon, keep the standard output and error.",
    "capture_output": "Send the application's standard output and error to the "
                      "--error-logfile file.",
    "check_config": "Check the configuration and that the application loads, then exit "
                    "(status 0 if both are fine).",
    "print_config": "Print every setting's value, then exit.",
    "logconfig": "Configure Python's logging from FILE (logging.config.fileConfig, with "
                 "%(here)s its directory), as gunicorn: the error log goes through the logger "
                 "gunicorn.error, each access line through gunicorn.access.",
    "logconfig_json": "Configure Python's logging from a JSON FILE (logging.config.dictConfig "
                      "over gunicorn's defaults), as --log-config.",
    "paste": "Serve the application of a PasteDeploy .ini FILE (PasteDeploy must be "
             "installed); FILE#NAME for a section other than main.",
    "raw_paste_global_conf": "KEY=VALUE given to the PasteDeploy file as a global. "
                             "May be repeated.",
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
GUNICORN_CMD_ARGS and {ENV_PREFIX}CMD_ARGS hold more flags ("-w 4 -b :8000"),
which override the config file and are overridden by the command line.

gunicorn's flags and configuration files are accepted: its names of forker's
options are aliases (-b, -w, -t, --access-logfile, ...), and a setting forker
lacks (HTTP/2, ASGI, syslog, dirty arbiters, ...) is warned about by
name when it asks for something, or refused when serving without it would do
something else (-k gevent, --protocol uwsgi).
"""


def _shown_default(default: Any) -> str:
    """A default as --help shows it: quoted and escaped when the help
    formatter, which folds whitespace, would change it ("ok\\n" is 'ok\\n')."""
    shown = ",".join(map(str, default)) if isinstance(default, list) else str(default)
    if shown != " ".join(shown.split()) or not shown.isprintable():
        return repr(shown)
    return shown


class Parser(argparse.ArgumentParser):
    """argparse's, with a mistake told in one line: its usage, which lists
    every option, would bury the line that names it."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="forker", description=DESCRIPTION, epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("app", nargs="?", metavar="APP",
                        help="the application to serve (default: the built-in greeting)")
    parser.add_argument("--version", action="version", version=f"forker {__version__}")
    for option in OPTIONS:
        if option.flag is None:
            continue
        text = option.help.replace("%", "%%")  # argparse %-formats help strings
        kwargs: Dict[str, Any] = {"dest": option.name, "default": argparse.SUPPRESS}
        default = None if callable(option.default) else option.default
        flags = (option.flag,) + ALIASES.get(option.name, ())
        if option.name == "proxy_protocol":  # gunicorn's --proxy-protocol [v1|v2|auto|off]
            kwargs.update(nargs="?", const=True, metavar="MODE")
            parser.add_argument("--no-proxy-protocol", dest=option.name, action="store_const",
                                const=False, default=argparse.SUPPRESS,
                                help="No PROXY protocol header (the default).")
        elif isinstance(default, bool) or option.switch:
            kwargs["action"] = argparse.BooleanOptionalAction
        else:
            kwargs["metavar"] = option.metavar or option.name.upper()
            if option.repeatable:
                kwargs["action"] = "append"
                text += " May be repeated."
            if default not in (None, "", []):
                text += f" [default: {_shown_default(default)}]".replace("%", "%%")
        parser.add_argument(*flags, help=text, **kwargs)
    honoured = parser.add_argument_group("gunicorn's settings that forker honours")
    taken = parser._option_string_actions  # flags already defined, by forker's options
    for name, setting in compat.SETTINGS.items():
        flags = tuple(flag for flag in setting.flags if flag not in taken)
        if not flags:
            continue
        group = honoured if name in EXTRA_HELP else parser
        text = EXTRA_HELP[name].replace("%", "%%") if name in EXTRA_HELP else argparse.SUPPRESS
        kwargs = {"dest": GUNICORN_DEST + name, "default": argparse.SUPPRESS, "help": text}
        if setting.kind == "switch":
            kwargs["action"] = "store_true"
        elif setting.kind == "off":
            kwargs.update(action="store_const", const=False)
        elif setting.kind == "append":
            kwargs.update(action="append", metavar="KEY=VALUE")
        elif setting.kind == "optional":
            kwargs.update(nargs="?", const="auto", metavar=name.upper())
        else:
            kwargs["metavar"] = {"config": "FILE", "logconfig": "FILE", "logconfig_json": "FILE",
                                 "paste": "FILE", "worker_class": "CLASS",
                                 "pythonpath": "DIRS"}.get(name, name.upper())
        group.add_argument(*flags, **kwargs)
    return parser


def _message(option_name: str, exc: ConfigError) -> str:
    text = str(exc)
    prefix = option_name + ": "
    return text[len(prefix):] if text.startswith(prefix) else text


def collect(args: argparse.Namespace, settings: Optional[Dict[str, Any]] = None,
            environ: Optional[Dict[str, str]] = None) -> Config:
    """Defaults < gunicorn's PORT, WEB_CONCURRENCY, FORWARDED_ALLOW_IPS and
    SCRIPT_NAME < FORKER_* environment < settings (of the --config file) <
    GUNICORN_CMD_ARGS < FORKER_CMD_ARGS < flags. A bad value raises
    ConfigError naming where it came from."""
    return collect_all(args, settings, environ)[0]


def cmd_args(environ: Mapping[str, str]) -> List[Tuple[str, argparse.Namespace]]:
    """The arguments of GUNICORN_CMD_ARGS and FORKER_CMD_ARGS, parsed as the
    command line's: (variable, namespace) for each variable set, lowest
    precedence first. A bad one raises ConfigError naming the variable."""
    found = []
    for variable in CMD_ARGS_VARIABLES:
        text = environ.get(variable, "")
        if not text.strip():
            continue
        where = f"environment variable {variable}: "
        try:
            argv = shlex.split(text)
        except ValueError as exc:
            raise ConfigError(f"{where}{exc}") from None
        parser = build_parser()

        def refuse(message: str, where: str = where) -> NoReturn:
            raise ConfigError(where + message)

        parser.error = refuse  # type: ignore[method-assign]
        found.append((variable, parser.parse_args(argv)))
    return found


# The environment variables gunicorn takes defaults from, below every other
# source: PORT (as platforms that route to it set it: bind 0.0.0.0:PORT),
# WEB_CONCURRENCY (the workers), FORWARDED_ALLOW_IPS and SCRIPT_NAME.
GUNICORN_ENVIRONMENT = (("PORT", "bind"), ("WEB_CONCURRENCY", "workers"),
                        ("FORWARDED_ALLOW_IPS", "forwarded_allow_ips"),
                        ("SCRIPT_NAME", "root_path"))


def collect_all(args: argparse.Namespace, settings: Optional[Dict[str, Any]] = None,
                environ: Optional[Mapping[str, str]] = None) -> Tuple[Config, Dict[str, Any]]:
    """collect(), and the compat.EXTRAS given, which the command line does itself."""
    environ = dict(os.environ) if environ is None else environ
    source = getattr(args, "config_path", None) or getattr(args, GUNICORN_DEST + "config", None) \
        or "the configuration file"
    extras: Dict[str, Any] = {}
    config = Config()
    for variable, name in GUNICORN_ENVIRONMENT:
        if environ.get(variable, "").strip():
            value = environ[variable].strip()
            try:
                config.update({name: f"0.0.0.0:{value}" if variable == "PORT" else value})
            except ConfigError as exc:
                raise ConfigError(f"environment variable {variable}: "
                                  f"{_message(name, exc)}") from None
    for option in OPTIONS:
        variable = ENV_PREFIX + option.name.upper()
        if variable in environ:
            try:
                config.update({option.name: environ[variable]})
            except ConfigError as exc:
                raise ConfigError(f"environment variable {variable}: "
                                  f"{_message(option.name, exc)}") from None
    for key, value in (settings or {}).items():
        if key in compat.SETTINGS:  # gunicorn's name (most are forker's too)
            values = compat.translate(key, value, f"{source}: ")
        elif key in OPTIONS_BY_NAME:
            values = {key: value}
        else:
            continue  # a helper of the file's own (import multiprocessing), as gunicorn
        for name, item in values.items():
            _set(config, extras, name, item, f"{source}: {key}")
    for variable, namespace in cmd_args(environ):
        _apply_flags(namespace, config, extras, f"environment variable {variable}: ")
    _apply_flags(args, config, extras, "")
    context = config.ssl_context
    if isinstance(context, compat._GunicornSSLContext):
        context.config = config  # gunicorn's ssl_context(config, factory) reads the files
    return config, extras


def _apply_flags(args: argparse.Namespace, config: Config, extras: Dict[str, Any],
                 where: str) -> None:
    """The flags given in args (a command line's, or a CMD_ARGS variable's) onto
    config and extras; where prefixes the message of a bad value."""
    given = vars(args)
    for key, value in given.items():  # gunicorn's flags for what forker lacks or does itself
        if not key.startswith(GUNICORN_DEST):
            continue
        name = key[len(GUNICORN_DEST):]
        flag = compat.gunicorn_flag(name)
        for option_name, item in compat.translate(name, value,
                                                  f"{where}argument {flag}: ").items():
            _set(config, extras, option_name, item, f"{where}argument {flag}")
    for option in OPTIONS:
        if option.flag is not None and option.name in given:
            _set(config, extras, option.name, given[option.name],
                 f"{where}argument {option.flag}")


def _set(config: Config, extras: Dict[str, Any], name: str, value: Any, source: str) -> None:
    """One setting onto extras (what the command line does itself) or config;
    source names where it came from in the message of a bad value."""
    if name in compat.EXTRAS:
        extras[name] = value
        return
    try:
        config.update({name: value})
    except ConfigError as exc:
        raise ConfigError(f"{source}: {_message(name, exc)}") from None


def configure(args: argparse.Namespace, parser: argparse.ArgumentParser,
              settings: Optional[Dict[str, Any]] = None,
              environ: Optional[Dict[str, str]] = None) -> Config:
    """collect(), with errors reported by the parser (exit status 2)."""
    return configure_all(args, parser, settings, environ)[0]


def configure_all(args: argparse.Namespace, parser: argparse.ArgumentParser,
                  settings: Optional[Dict[str, Any]] = None,
                  environ: Optional[Dict[str, str]] = None) -> Tuple[Config, Dict[str, Any]]:
    try:
        return collect_all(args, settings, environ)
    except ConfigError as exc:
        parser.error(str(exc))


def config_path(args: argparse.Namespace,
                environ: Optional[Mapping[str, str]] = None) -> Optional[str]:
    """-c FILE (or python:MODULE) of the command line, else of FORKER_CMD_ARGS
    or GUNICORN_CMD_ARGS (gunicorn: the command line's -c wins), else
    ./forker.conf.py when it exists, else ./gunicorn.conf.py."""
    given = getattr(args, GUNICORN_DEST + "config", None)
    if given is None:
        for _, namespace in reversed(cmd_args(os.environ if environ is None else environ)):
            given = getattr(namespace, GUNICORN_DEST + "config", None)
            if given is not None:
                break
    if given is not None:
        return str(given)
    for default in DEFAULT_CONFIGS:
        if os.path.isfile(default):
            return default
    return None


def read_config_file(path: str) -> Dict[str, Any]:
    """The public module-level names a Python settings file (or, for
    python:MODULE, a module) defines."""
    if path.startswith("python:"):
        import importlib

        try:
            module = importlib.import_module(path[len("python:"):])
        except Exception:
            raise ConfigError(f"argument --config: importing {path} failed:\n"
                              f"{traceback.format_exc()}") from None
        namespace = vars(module)
    else:
        if not os.path.isfile(path):
            raise ConfigError(f"argument --config: no such file: {path}")
        import runpy

        try:
            namespace = runpy.run_path(path, run_name="__config__")
        except Exception:
            raise ConfigError(f"argument --config: {path} raised an error:\n"
                              f"{traceback.format_exc()}") from None
    return {key: value for key, value in namespace.items() if not key.startswith("_")}


def _fail(message: str, status: int = 2) -> NoReturn:
    sys.stderr.write(f"forker: error: {message}\n")
    raise SystemExit(status)


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
        path = config_path(args)
        args.config_path = path
        settings = read_config_file(path) if path is not None else {}
        environment_apps = [ns.app for _, ns in cmd_args(os.environ) if ns.app is not None]
    except ConfigError as exc:
        parser.error(str(exc))
    config, extras = configure_all(args, parser, settings)
    try:
        _apply_environment(extras)
    except ConfigError as exc:
        parser.error(str(exc))
    if extras.get("print_config"):
        for name, value in sorted(config.as_dict().items()):
            print(f"{name:<28} = {value!r}")
        return 0
    # APP: the command line's, else the last CMD_ARGS variable's (gunicorn ignores
    # one there; forker ignores nothing in silence), else wsgi_app of the file
    spec = args.app if args.app is not None else (
        environment_apps[-1] if environment_apps else extras.get("wsgi_app"))

    from . import logs
    from .app import greeting

    if config.chdir:
        try:
            os.chdir(config.chdir)
        except OSError as exc:
            _fail(f"argument --chdir: cannot change directory to {config.chdir!r}: {exc.strerror}")
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    app: Any
    if extras.get("paste"):
        if spec is not None:
            _fail("give either APP or --paste, not both")
        app = _load_paste(extras["paste"], extras.get("raw_paste_global_conf"))
        spec = extras["paste"]
    elif spec is None:
        app = greeting
        config.update({"interface": "native"})  # the greeting is a native handler
    else:
        app = spec  # imported by the master (--preload) or by each worker
        try:
            _check_importable(spec)
        except AppImportError as exc:
            _fail(f"cannot load the application {spec!r}: {exc}")
    if extras.get("check_config"):
        return _check_config(app, config)
    if extras.get("daemon"):
        _daemonize(bool(extras.get("enable_stdio_inheritance")))
    try:
        logs.setup(config)
    except OSError as exc:
        _fail(f"error_log: cannot write to {config.error_log}: {exc.strerror}")
    ignored = _configure_logging(config, extras)
    log = logging.getLogger("forker.master")
    if path is not None:
        log.info("configuration read from %s", os.path.abspath(path)
                 if not path.startswith("python:") else path)
    for warning in compat.take_warnings() + ([ignored] if ignored else []):
        log.warning("%s", warning)
    if app is greeting:  # said, since a flag that took APP as its value looks the same
        log.info("no APP given: serving the built-in greeting on every path")
    if extras.get("capture_output"):
        _capture_output(config)
    options = config.as_dict()
    options["chdir"] = None  # done: a reload must not apply a relative path twice

    def reload_options() -> Dict[str, Any]:
        """HUP: the environment and the --config file again, under the same flags."""
        fresh = collect(args, read_config_file(path) if path else {})
        for warning in compat.take_warnings():
            log.warning("HUP: %s", warning)
        fresh.update({"chdir": None, "interface": config.interface})
        return fresh.as_dict()

    from .master import run

    try:
        status = run(app, options, reload_options)
    except AppImportError as exc:  # --preload: the master imports it
        _fail(f"cannot load the application {spec!r}: {exc}")
    except ConfigError as exc:  # found by the master: certificates, log files
        _fail(str(exc))
    except BindError as exc:  # a port in use, an address not on this host
        _fail(exc.strerror or str(exc), 1)
    except HookError as exc:  # on_starting (its traceback is logged)
        _fail(str(exc), 1)
    return status if isinstance(status, int) else 0


def _apply_environment(extras: Dict[str, Any]) -> None:
    """-e, --pythonpath: what the master and the workers it forks inherit."""
    if "raw_env" in extras:
        for key, value in compat.env_pairs("raw_env", extras["raw_env"]):
            os.environ[key] = value
    if extras.get("pythonpath"):
        for directory in reversed(compat.pythonpath_dirs(extras["pythonpath"])):
            if directory not in sys.path:
                sys.path.insert(0, directory)


def _check_config(app: Any, config: Config) -> int:
    """--check-config: the configuration was read; load the application too."""
    from .appspec import load_handler
    from .tls import check

    try:
        check(config)
        load_handler(app, config, fresh=False)
    except (AppImportError, ConfigError) as exc:
        sys.stderr.write(f"forker: error: {exc}\n")
        return 1
    print("forker: the configuration and the application are fine")
    return 0


def _load_paste(path: str, global_conf: Any) -> Any:
    """--paste FILE[#NAME]: the WSGI application of a PasteDeploy file."""
    try:
        from paste.deploy import loadapp  # type: ignore[import-not-found,import-untyped,unused-ignore]
    except ImportError:
        _fail(f"--paste {path}: PasteDeploy is not installed (pip install PasteDeploy)")
    name = None
    if "#" in path:
        path, name = path.split("#", 1)
    defaults = dict(compat.env_pairs("raw_paste_global_conf", global_conf or []))
    try:
        return loadapp(f"config:{os.path.abspath(path)}", name=name, global_conf=defaults)
    except Exception:
        _fail(f"--paste {path}: cannot load the application:\n{traceback.format_exc()}")


def _configure_logging(config: Config, extras: Dict[str, Any]) -> Optional[str]:
    """--log-config, --log-config-json, logconfig_dict: Python's logging.config,
    applied as gunicorn applies them (forker.logs.configure): the first given of
    the dict, the JSON file and the ini file. Returns a warning naming those left
    out."""
    from . import logs

    given = [(name, flag) for name, flag in (("logconfig_dict", "logconfig_dict"),
                                             ("logconfig_json", "--log-config-json"),
                                             ("logconfig", "--log-config"))
             if extras.get(name)]
    if not given:
        return None
    name, flag = given[0]
    try:
        logs.configure(config, name, extras[name])
    except Exception as exc:
        _fail(f"argument {flag}: cannot configure logging: {exc}")
    if len(given) > 1:
        return (f"{', '.join(other for _, other in given[1:])} ignored: {flag} configures "
                "logging (gunicorn reads one, in this order: logconfig_dict, "
                "--log-config-json, --log-config)")
    return None


def _capture_output(config: Config) -> None:
    """--capture-output: file descriptors 1 and 2 to the error log file."""
    if config.error_log in (None, "", "-"):
        return
    fd = os.open(config.error_log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)


def _daemonize(keep_stdio: bool) -> None:
    """-D: fork twice, a session of our own, standard streams to /dev/null."""
    if os.fork():
        os._exit(0)
    os.setsid()
    if os.fork():
        os._exit(0)
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    if not keep_stdio:
        os.dup2(null, 1)
        os.dup2(null, 2)
    os.close(null)
