"""The FastAPI route details of a request, remembered for the app's static routes.

The official FastAPI instrumentation names the server span from the route the request matches:
its ``_get_default_span_details(scope)`` walks the app's routes (flattened through included
routers) and calls each one's ``matches(scope)`` until one matches in full. That walk costs
32.6 us a request on an app with 5 routes and 38 us with 35 (timeit, FastAPI 0.165), about 5%
of what otelfin adds to a request, and FastAPI's router then walks the same routes to dispatch.

:func:`route_details` wraps that official function in a :class:`RouteMemo` that remembers its
answer where the answer is a function of a small key, and calls it otherwise. Why the key is
enough, for FastAPI 0.165 / Starlette 1.10 (the versions otelfin pins the instrumentation for):

* Starlette's ``Route``, ``WebSocketRoute`` and ``Mount`` and FastAPI's ``APIRoute``,
  ``APIWebSocketRoute`` and the contexts of included routers match on ``scope["type"]``,
  ``scope["path"]``, ``scope["root_path"]`` and ``scope["method"]``; ``APIRoute`` also reads
  the route context FastAPI keeps under ``scope["fastapi"]`` (a scope carrying that key is not
  remembered). Their path parameters go through Starlette's own convertors, which are pure.
* The official function upper-cases the method and reads an environment variable to decide
  whether an unknown one becomes ``_OTHER``: only the standard methods, which it keeps as they
  are whatever that variable says, are remembered.
* A ``Host`` route reads the host header, and a route class that overrides ``matches`` may
  read anything, so an app with either (or anything else in its routes: FastAPI's frontend
  routes) is not remembered at all. That is decided once per routes version, not per request.

The routes are watched, not trusted: each request compares ``app.routes`` and the route list
of every included router with the copies taken when the routes were last looked at (a list
comparison, identity first, ~0.1 us), so a route added, removed or replaced after start-up is
seen. Not seen: a route object changed in place (its path or methods reassigned), or replaced
by another that compares equal to it (Starlette's ``Route.__eq__``: same path, endpoint and
methods).

Memory stays bounded: only answers whose ``http.route`` is the request's own route path (a
static route: no path parameter, not a mount's prefix, not a 404) are kept, so ids in URLs and
scanners' paths never enter; and at most :data:`CAPACITY` answers are kept for one version of
the routes (beyond that, requests take the official path, nothing counted).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from otelfin import _internal

__all__ = ["CAPACITY", "RouteMemo", "route_details"]

#: Answers kept for one version of an app's routes at most.
CAPACITY = 256

Details = Callable[[Any], tuple[str, dict[str, Any]]]

# The methods the official sanitize_method keeps as they are, whatever the environment says.
_STANDARD_METHODS = frozenset(
    ("GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH", "QUERY")
)
_ROUTE = "http.route"


def route_details(details: Details) -> Details:
    """``details`` itself, or a :class:`RouteMemo` of it when it is the official FastAPI
    instrumentation's ``_get_default_span_details`` (whose matching this module has read). A
    callback of the user's, or the Starlette instrumentation's (whose lean fast path is never
    taken: it keeps receive/send spans), is called on every request."""
    called: Details = details  # as handed (mypy narrows ``details`` by the identity test)
    official = sys.modules.get("opentelemetry.instrumentation.fastapi")
    known = getattr(official, "_get_default_span_details", None)
    flatten = getattr(official, "_flatten_routes", None)
    if known is None or details is not known or flatten is None:
        return details
    try:
        from fastapi.routing import APIRoute, APIWebSocketRoute, RouteContext
        from starlette import convertors
        from starlette.routing import Mount, Route, WebSocketRoute
    except ImportError:
        return called
    own = (Route, WebSocketRoute, Mount, APIRoute, APIWebSocketRoute)
    return RouteMemo(
        details,
        flatten,
        RouteContext,
        frozenset(kind.matches for kind in own),
        frozenset(
            (
                convertors.StringConvertor,
                convertors.PathConvertor,
                convertors.IntegerConvertor,
                convertors.FloatConvertor,
                convertors.UUIDConvertor,
            )
        ),
    )


class _Routes:
    """One version of an app's routes: the lists watched and, when the matching reads only
    the key, the answers remembered (``memo``; None when nothing may be remembered)."""

    __slots__ = ("app", "memo", "watched")

    def __init__(
        self, app: Any, watched: tuple[tuple[Any, list[Any]], ...], memo: dict[Any, Any] | None
    ) -> None:
        self.app = app
        self.watched = watched
        self.memo = memo

    def unchanged(self) -> bool:
        for owner, seen in self.watched:  # noqa: SIM110 (all() and a generator: +0.2 us)
            if owner.routes != seen:
                return False
        return True


class _Unknown(Exception):
    """A route structure this module has not read."""


class RouteMemo:
    """The official FastAPI span details, remembered for static routes (module docstring).
    Called like the official function, with the same result for every scope."""

    def __init__(
        self,
        details: Details,
        flatten: Callable[[Any], Any],
        context_type: Any,
        own_matches: frozenset[Any],
        own_convertors: frozenset[type],
    ) -> None:
        self.details = details
        self._flatten = flatten
        self._context_type = context_type
        self._own_matches = own_matches
        self._own_convertors = own_convertors
        self._routes = _Routes(None, (), None)

    def __call__(self, scope: Any) -> tuple[str, dict[str, Any]]:
        routes = self._routes
        app = scope.get("app")
        if app is not routes.app or not routes.unchanged():
            routes = self._routes = self._look(app)
        memo = routes.memo
        method = scope.get("method")
        path = scope.get("path")
        root = scope.get("root_path")
        if (
            memo is None
            or type(method) is not str
            or method not in _STANDARD_METHODS
            or type(path) is not str
            or (root is not None and type(root) is not str)
            or scope.get("fastapi")
        ):
            return self.details(scope)
        key = (scope["type"], method, path, root)
        hit = memo.get(key)
        if hit is not None:
            return hit[0], dict(hit[1])
        name, extra = self.details(scope)
        route = extra.get(_ROUTE)
        if route is not None and len(memo) < CAPACITY and route == _route_path(path, root):
            memo[key] = (name, dict(extra))
        return name, extra

    def _look(self, app: Any) -> _Routes:
        """Watch ``app``'s routes and decide whether their answers may be remembered."""
        if app is None:
            return _Routes(None, (), None)
        try:
            watched = self._watch(app)
            own = self._own_matching(app)
        except _Unknown:  # an included router of a shape not read here: never remembered
            return _Routes(app, (), None)
        except Exception as exc:  # the official call answers; the app is never remembered
            _internal.report("transports.routes.look", exc)
            return _Routes(app, (), None)
        return _Routes(app, watched, {} if own else None)

    def _watch(self, app: Any) -> tuple[tuple[Any, list[Any]], ...]:
        """``(owner, copy of owner.routes)`` for the app and every router included in it
        (the official flattening reads the included routers' own lists)."""
        watched: list[tuple[Any, list[Any]]] = []
        pending = [app]
        while pending:
            owner = pending.pop()
            if any(owner is seen for seen, _ in watched):
                continue
            routes = list(owner.routes)
            watched.append((owner, routes))
            for route in routes:
                if hasattr(route, "effective_route_contexts"):  # an included router
                    router = getattr(route, "original_router", None)
                    if router is None:
                        raise _Unknown(type(route).__name__)
                    pending.append(router)
        return tuple(watched)

    def _own_matching(self, app: Any) -> bool:
        """Whether every route the official function walks matches with Starlette's or
        FastAPI's own code and convertors (the module docstring says what those read)."""
        for item in self._flatten(app.routes):
            if type(item) is not self._context_type:
                return False
            original = item.original_route
            if type(original).matches not in self._own_matches:
                return False
            if "matches" in getattr(original, "__dict__", {}):
                return False
            convertors = getattr(item, "param_convertors", None) or {}
            if any(type(c) not in self._own_convertors for c in convertors.values()):
                return False
        return True


def _route_path(path: str, root: str | None) -> str:
    # Starlette's get_route_path (starlette/_utils.py): the path below the root path
    if not root or not path.startswith(root):
        return path
    if path == root:
        return ""
    if path[len(root)] == "/":
        return path[len(root) :]
    return path
