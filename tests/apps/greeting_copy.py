"""The built-in greeting's answer from a Python handler: the loop answers the
built-in one itself, and must say exactly what this says."""


def app(request):
    return b"greeting!!!"
