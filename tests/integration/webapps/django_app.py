"""The Django app's URLs and WSGI application (gunicorn serves ``application``)."""

from __future__ import annotations

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.integration.webapps.django_settings")

from django.core.wsgi import get_wsgi_application
from django.http import HttpRequest, JsonResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt

from tests.integration.webapps import outcome


@csrf_exempt
def pay(request: HttpRequest, pid: int) -> JsonResponse:
    """Pay, decline (402), fail with a coded 503 or crash (500), by payment id."""
    outcome(pid)
    return JsonResponse({"pid": pid})


urlpatterns = [path("payments/<int:pid>", pay)]
application = get_wsgi_application()
