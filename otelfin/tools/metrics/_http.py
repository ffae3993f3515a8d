"""HTTP for the offline reports: a bounded GET that opens only http(s) URLs.

``check_url`` refuses anything but ``http://``/``https://`` (a ``file://`` URL would read a
local file and quote it), redirects are followed to http(s) only, and a body is read within one
overall deadline and at most :data:`MAX_BODY_BYTES`. :func:`scrape` reads a ``/metrics`` URL.
"""

from __future__ import annotations

import http.client
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from otelfin.tools.metrics._series import HistogramSeries, ReportError, series_from_text

__all__ = ["MAX_BODY_BYTES", "check_url", "scrape"]

_OPENMETRICS_ACCEPT = "application/openmetrics-text; version=1.0.0, text/plain; version=0.0.4"


def scrape(url: str, metric: str, timeout: float = 10.0) -> list[HistogramSeries]:
    """GET a ``/metrics`` URL (asking for OpenMetrics, for exemplars) and parse it.

    Only ``http``/``https`` URLs; ``timeout`` bounds the whole request, not each read.
    """
    check_url(url, "--scrape")
    status, body = _fetch(url, {"Accept": _OPENMETRICS_ACCEPT}, timeout, f"cannot scrape {url}")
    if status != 200:
        raise ReportError(f"cannot scrape {url}: HTTP {status}")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ReportError(f"cannot scrape {url}: not UTF-8 text (byte {exc.start})") from None
    return series_from_text(text, metric)


#: The largest HTTP body read from a /metrics URL or Prometheus (larger ones are refused).
MAX_BODY_BYTES = 64 << 20


class _HttpOnlyRedirects(urllib.request.HTTPRedirectHandler):
    """Follow redirects to http(s) only (urllib also follows them to ftp://)."""

    def redirect_request(
        self, req: Any, fp: Any, code: int, msg: str, headers: Any, newurl: str
    ) -> Any:
        if urllib.parse.urlsplit(newurl).scheme not in ("http", "https"):
            raise urllib.error.URLError(f"refused a redirect to {_short(newurl)}")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def check_url(url: str, option: str) -> None:
    """Raise :class:`ReportError` unless ``url`` is an ``http://`` or ``https://`` URL.

    Nothing else is ever opened: a ``file://`` URL would read a local file and quote it.
    """
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        parts = None
    if parts is None or parts.scheme not in ("http", "https") or not parts.netloc:
        shown = parts.scheme + ":" if parts is not None and parts.scheme else _short(url)
        raise ReportError(f"{option} takes an http:// or https:// URL, not {shown!r}")


def _short(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _fetch(url: str, headers: dict[str, str], timeout: float, what: str) -> tuple[int, bytes]:
    """``(status, body)`` of a GET, within about ``timeout`` seconds overall and MAX_BODY_BYTES.

    Error statuses are returned, not raised; an unreachable or too slow server, a body that is
    too large or a refused redirect raise :class:`ReportError` starting with ``what``.
    """
    deadline = time.monotonic() + timeout
    opener = urllib.request.build_opener(_HttpOnlyRedirects)
    request = urllib.request.Request(url, headers=headers)
    try:
        try:
            response = opener.open(request, timeout=timeout)
        except urllib.error.HTTPError as exc:
            response = exc  # an error status still has a body worth reading
        with response:
            status = int(response.status or 0)
            chunks: list[bytes] = []
            size = 0
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"no complete answer within {timeout:g}s (--timeout)")
                # read1: what has arrived, at most one socket read (each bounded by ``timeout``),
                # so a server trickling bytes is cut off soon after the deadline.
                chunk = response.read1(1 << 16)
                if not chunk:
                    break
                size += len(chunk)
                if size > MAX_BODY_BYTES:
                    raise ReportError(
                        f"{what}: the answer is larger than {MAX_BODY_BYTES >> 20} MiB"
                    )
                chunks.append(chunk)
    except ReportError:
        raise
    except TimeoutError as exc:
        detail = (
            str(exc) if "--timeout" in str(exc) else f"no answer within {timeout:g}s (--timeout)"
        )
        raise ReportError(f"{what}: {detail}") from None
    except (urllib.error.URLError, OSError, ValueError, http.client.HTTPException) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise ReportError(f"{what}: {_short(str(reason), 200)}") from None
    return status, b"".join(chunks)
