"""Minimal Django settings; ``configure()`` runs here, before Django loads its middleware."""

from __future__ import annotations

import otelfin

SECRET_KEY = "otelfin-tests-only"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
ROOT_URLCONF = "tests.integration.webapps.django_app"
INSTALLED_APPS: list[str] = []
MIDDLEWARE = ["otelfin.instrument.ProblemDetailsMiddleware"]
USE_TZ = True

otelfin.configure("ledger-admin")  # spans file, processor, metrics port: from the environment
