"""forker.app.load: the APP argument's forms and its error messages."""

from __future__ import annotations

import functools
import os
import sys
import textwrap

import pytest

from forker.app import as_handler, greeting, load
from forker.interface import detect as detect_interface
from forker.config import Config
from forker.errors import AppImportError
from forker.wsgi import WSGIHandler

HERE = os.path.dirname(os.path.abspath(__file__))


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A directory with a few modules, on a clean sys.path and cwd."""
    (tmp_path / "plain.py").write_text(textwrap.dedent("""
        def application(environ, start_response):
            start_response("200 OK", [])
            return [b"plain"]
        app = "not this one"
    """))
    (tmp_path / "only_app.py").write_text("def app(e, s):\n    return []\n")
    (tmp_path / "neither.py").write_text("x = 1\n")
    (tmp_path / "factories.py").write_text(textwrap.dedent("""
        class Holder:
            class Inner:
                @staticmethod
                def handler(request):
                    return b"inner"
        def make(name="default", *, flag=False, items=()):
            def app(environ, start_response):
                return [repr((name, flag, items)).encode()]
            app.args = (name, flag, items)
            return app
        def broken():
            raise ValueError("factory exploded")
        not_callable = 42
    """))
    (tmp_path / "bad_import.py").write_text("import does_not_exist_anywhere\n")
    (tmp_path / "bad_syntax.py").write_text("def (:\n")
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text("")
    (tmp_path / "pkg" / "sub.py").write_text("def app(e, s):\n    return []\n")
    monkeypatch.chdir(HERE)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", os.getcwd())])
    for name in list(sys.modules):
        if name.split(".")[0] in ("plain", "only_app", "neither", "factories", "bad_import",
                                  "bad_syntax", "pkg"):
            del sys.modules[name]
    return tmp_path


def test_module_colon_name(project):
    app = load("plain:application", chdir=str(project))
    assert app.__name__ == "application"
    assert os.getcwd() == str(project)
    assert str(project) in sys.path


def test_module_alone_prefers_application_then_app(project):
    assert load("plain", chdir=str(project)).__name__ == "application"
    assert load("only_app", chdir=str(project)).__name__ == "app"


def test_dotted_module_and_attribute(project):
    assert load("pkg.sub:app", chdir=str(project)).__name__ == "app"
    assert load("factories:Holder.Inner.handler", chdir=str(project))(None) == b"inner"


@pytest.mark.parametrize("spec, args", [
    ("factories:make()", ("default", False, ())),
    ("factories:make('prod')", ("prod", False, ())),
    ("factories:make('x', flag=True, items=[1, (2, 3)])", ("x", True, [1, (2, 3)])),
    ("factories:make(name='kw')", ("kw", False, ())),
])
def test_factory_calls(project, spec, args):
    assert load(spec, chdir=str(project)).args == args


@pytest.mark.parametrize("spec, message", [
    ("missing_module:app", "no module named 'missing_module'"),
    ("neither", "has neither an `application` nor an `app`"),
    ("plain:nothing", "'plain' has no attribute 'nothing'"),
    ("factories:Holder.Missing", "'factories.Holder' has no attribute 'Missing'"),
    ("factories:not_callable", "is a int, not a callable application"),
    ("factories:not_callable()", "is not callable"),
    ("factories:make(open('x'))", "factory arguments must be Python literals"),
    ("factories:make(*[1])", "factory arguments must be Python literals"),
    ("factories:make(**{})", "factory arguments must be Python literals"),
    ("factories:broken()", "calling the factory 'factories:broken()' failed"),
    ("factories:1 + 2", "not a name or a call"),
    ("factories:make(", "not a name or a call"),
    ("bad_import:app", "importing 'bad_import' failed"),
    ("bad_syntax:app", "importing 'bad_syntax' failed"),
    (":app", "expected MODULE"),
    ("plain:", "expected MODULE"),
])
def test_errors_name_what_failed(project, spec, message):
    with pytest.raises(AppImportError) as info:
        load(spec, chdir=str(project))
    assert message in str(info.value)


def test_import_error_inside_the_module_shows_the_real_cause(project):
    with pytest.raises(AppImportError, match="does_not_exist_anywhere"):
        load("bad_import:app", chdir=str(project))


def test_factory_error_shows_its_traceback(project):
    with pytest.raises(AppImportError, match="ValueError: factory exploded"):
        load("factories:broken()", chdir=str(project))


def test_bad_chdir(tmp_path):
    with pytest.raises(AppImportError, match="cannot change directory"):
        load("x:app", chdir=str(tmp_path / "nope"))


def test_greeting():
    assert greeting(object()) == b"greeting!!!"


def test_as_handler_wraps_once():
    def app(environ, start_response):
        return []

    assert as_handler(app, Config(interface="native")) is app
    handler = as_handler(app, Config(interface="wsgi"))
    assert isinstance(handler, WSGIHandler) and handler.app is app
    assert as_handler(handler, Config(interface="wsgi")) is handler


def wsgi_function(environ, start_response):
    return []


def native_handler(request):
    return b""


class WSGIClass:
    """PEP 3333 allows a class: calling it gives the iterable."""

    def __init__(self, environ, start_response):
        pass

    def __iter__(self):
        return iter(())


class WSGIMiddleware:
    def __init__(self, app):
        self.app = app

    def __call__(self, environ, start_response):
        return self.app(environ, start_response)


class NativeObject:
    def __call__(self, request, *, extra=None):
        return b""


@pytest.mark.parametrize("app, interface", [
    (wsgi_function, "wsgi"),
    (WSGIClass, "wsgi"),
    (WSGIMiddleware(wsgi_function), "wsgi"),
    (functools.partial(lambda prefix, environ, start_response: [], "x"), "wsgi"),
    (lambda environ=None, start_response=None: [], "wsgi"),
    (native_handler, "native"),
    (NativeObject(), "native"),
    (functools.wraps(native_handler)(lambda *args, **kwargs: b""), "native"),
    (greeting, "native"),
], ids=["function", "class", "middleware", "partial", "optional-arguments", "native",
        "native-object", "wrapped-native", "greeting"])
def test_detect_interface(app, interface, caplog):
    assert detect_interface(app) == interface
    assert not caplog.records


def test_detect_interface_warns_when_the_signature_says_neither(caplog):
    import wsgiref.validate

    assert detect_interface(wsgiref.validate.validator(wsgi_function)) == "native"
    assert "--interface" in caplog.text


def test_detect_interface_on_flask():
    flask = pytest.importorskip("flask")
    app = flask.Flask("detected")
    assert detect_interface(app) == "wsgi"
    assert isinstance(as_handler(app, Config()), WSGIHandler)


def test_as_handler_auto():
    assert isinstance(as_handler(wsgi_function, Config(interface="auto")), WSGIHandler)
    assert as_handler(native_handler, Config(interface="auto")) is native_handler
    assert as_handler(wsgi_function, Config(interface="native")) is wsgi_function


async def asgi_app(scope, receive, send):
    pass


class ASGIObject:
    async def __call__(self, scope, receive, send):
        pass


@pytest.mark.parametrize("app", [asgi_app, ASGIObject()], ids=["function", "object"])
@pytest.mark.parametrize("interface", ["native", "wsgi"])
def test_an_async_application_is_refused_by_a_synchronous_interface(app, interface):
    with pytest.raises(AppImportError, match="coroutine function"):
        as_handler(app, Config(interface=interface))


@pytest.mark.parametrize("app", [asgi_app, ASGIObject()], ids=["function", "object"])
@pytest.mark.parametrize("interface", ["auto", "asgi"])
def test_an_asgi_application_is_served_as_asgi(app, interface):
    from forker.asgi import ASGIHandler

    handler = as_handler(app, Config(interface=interface))
    assert isinstance(handler, ASGIHandler) and handler.app is app


async def async_handler(request):
    return b""


def test_a_synchronous_wrapper_of_a_coroutine_is_not_async():
    @functools.wraps(async_handler)
    def wrapper(request):
        return b""  # as asyncio.run(async_handler(request)) would

    assert as_handler(wrapper, Config()) is wrapper
