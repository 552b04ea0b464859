import json
import time

from django.http import Http404, HttpResponse, JsonResponse, StreamingHttpResponse
from django.views.decorators.csrf import csrf_exempt


def index(request):
    return HttpResponse("django index")


def hello(request, name):
    return HttpResponse(f"hello {name}")


@csrf_exempt
def echo_json(request):
    data = json.loads(request.body)
    return JsonResponse({"received": data, "count": len(data)})


@csrf_exempt
def form(request):
    return JsonResponse(request.POST.dict())


@csrf_exempt
def upload(request):
    f = request.FILES["file"]
    content = f.read()
    return JsonResponse({"filename": f.name, "size": len(content),
                         "head": content[:16].decode("latin-1"), "note": request.POST.get("note")})


def stream(request):
    def generate():
        for i in range(5):
            yield f"line {i}\n"
            time.sleep(0.005)
    return StreamingHttpResponse(generate(), content_type="text/plain")


def error(request):
    raise RuntimeError("django view failed")


def missing(request):
    raise Http404("no such thing")


def url(request):
    return JsonResponse({"url": request.build_absolute_uri(), "remote": request.META["REMOTE_ADDR"],
                         "secure": request.is_secure(), "script": request.META["SCRIPT_NAME"]})


def slow(request):
    time.sleep(0.1)
    return HttpResponse("slow")
