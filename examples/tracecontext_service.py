"""The W3C Trace Context test suite's service, built on otelfin.

Serves the harness protocol on 127.0.0.1: the harness POSTs a JSON list of ``{url, arguments}``
and the service POSTs ``arguments`` as JSON to each ``url``, one client span per call. The
incoming request is continued by otelfin's WSGI middleware and propagator; the outgoing calls
are made with ``requests``, which ``otelfin.configure()`` instruments.

    python examples/tracecontext_service.py --port 5000
    # in a checkout of w3c/trace-context, test/ directory:
    STRICT_LEVEL=2 SPEC_LEVEL=2 python test.py http://127.0.0.1:5000/test
"""

from __future__ import annotations

import argparse
import contextlib
import json
import socketserver
from collections.abc import Callable, Iterable
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import requests

import otelfin
from otelfin.instrument.transports.wsgi import middleware


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """POST /test: call every ``{url, arguments}`` of the JSON body in order."""
    if environ.get("REQUEST_METHOD") != "POST" or environ.get("PATH_INFO") != "/test":
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"not found\n"]
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
        calls = json.loads(environ["wsgi.input"].read(length) or b"[]")
    except ValueError:
        start_response("400 Bad Request", [("Content-Type", "text/plain")])
        return [b"body must be a JSON list\n"]
    with requests.Session() as session:
        for call in calls if isinstance(calls, list) else []:
            # The harness judges by the callbacks it receives; a failed call is not fatal.
            with contextlib.suppress(requests.RequestException, KeyError, TypeError):
                session.post(call["url"], json=call.get("arguments", []), timeout=10)
    start_response("200 OK", [("Content-Type", "application/json")])
    return [b"{}"]


class _Server(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=5000)
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args(argv)
    otelfin.configure(service_name="tracecontext-service")
    server = make_server(
        args.host, args.port, middleware(app), server_class=_Server, handler_class=_QuietHandler
    )
    print(f"tracecontext service on http://{args.host}:{server.server_port}/test", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        otelfin.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
