"""The Django application of the real-application scenarios: one settings
module in place, the greeting at GET / and a JsonResponse at GET /json,
through Django's full request handling (URL resolver, the default
middleware that needs no database)."""

import django
from django.conf import settings
from django.http import HttpResponse, JsonResponse
from django.urls import path

from benchmarks.apps import GREETING

if not settings.configured:
    settings.configure(
        DEBUG=False,
        SECRET_KEY="benchmark-only",
        ALLOWED_HOSTS=["*"],
        ROOT_URLCONF=__name__,
        MIDDLEWARE=[
            "django.middleware.security.SecurityMiddleware",
            "django.middleware.common.CommonMiddleware",
            "django.middleware.clickjacking.XFrameOptionsMiddleware",
        ],
        INSTALLED_APPS=[],
        USE_TZ=True,
    )
    django.setup()


def greeting(request):
    return HttpResponse(GREETING, content_type="text/plain")


def json_view(request):
    return JsonResponse({"message": "Hello, World!"})


urlpatterns = [path("", greeting), path("json", json_view)]

from django.core.wsgi import get_wsgi_application  # noqa: E402

app = get_wsgi_application()
