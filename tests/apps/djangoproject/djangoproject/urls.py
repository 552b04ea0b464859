from django.urls import path

from . import views

urlpatterns = [
    path("", views.index),
    path("hello/<str:name>", views.hello),
    path("json", views.echo_json),
    path("form", views.form),
    path("upload", views.upload),
    path("stream", views.stream),
    path("error", views.error),
    path("missing", views.missing),
    path("url", views.url),
    path("slow", views.slow),
]
