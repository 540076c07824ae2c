"""Who may call the service: same-origin rules (Origin, Host, JSON content type) and the token."""

from __future__ import annotations

import hmac
import logging

from .protocol import LOOPBACK_NAMES, is_loopback

log = logging.getLogger(__name__)


class Security:
    """Middlewares of :class:`~.app.Service` (a mixin)."""

    @property
    def _same_origin(self):
        """Cross-site requests are refused: a web page the user opens must not reach a service on
        their machine. A browser sends ``Origin`` (refused unless in --allow-origin); a DNS-rebinding
        page reaches a loopback service under another ``Host`` (refused); a form or ``text/plain``
        POST cannot carry ``application/json`` without a CORS preflight, so control requests need it."""
        from aiohttp import web

        @web.middleware
        async def same_origin(request, handler):
            origin = request.headers.get("Origin")
            if origin is not None and origin.rstrip("/").lower() not in self.allow_origins:
                self.metrics.refused.labels("origin").inc()
                return self._error(403, f"cross-origin request from {origin[:100]!r} refused; a browser page "
                                        "may reach this service only from an origin given with --allow-origin")
            if is_loopback(self.host) and (request.url.host or "").lower() not in LOOPBACK_NAMES:
                self.metrics.refused.labels("host").inc()
                return self._error(403, "this service listens on loopback: the Host header must name this "
                                        "machine (localhost, 127.0.0.1 or ::1)")
            if origin is not None and request.method == "OPTIONS":  # an allowed origin's CORS preflight
                return web.Response(status=204, headers=_cors(origin, preflight=True))
            if request.method == "POST" and request.content_type != "application/json":
                response = self._error(415, "control requests take a JSON body: send Content-Type: application/json")
            else:
                response = await handler(request)
            if origin is not None and not response.prepared:  # a WebSocket is upgraded already and needs none
                response.headers.update(_cors(origin))
            return response

        return same_origin

    @property
    def _auth(self):
        from aiohttp import web

        @web.middleware
        async def auth(request, handler):
            if self.token and request.path not in ("/healthz", "/readyz"):
                header = request.headers.get("Authorization", "")
                given = header[7:] if header.startswith("Bearer ") else request.query.get("token", "")
                if not hmac.compare_digest(given.encode("utf-8", "surrogateescape"), self.token.encode()):
                    self.metrics.refused.labels("auth").inc()
                    return self._error(401, "missing or wrong token: send 'Authorization: Bearer TOKEN' "
                                            "(or ?token= on the WebSocket URL)")
            return await handler(request)

        return auth


def _cors(origin: str, preflight: bool = False) -> dict[str, str]:
    """CORS headers for an origin given with --allow-origin: a page there may read the answers and,
    after the preflight, POST JSON with a token."""
    headers = {"Access-Control-Allow-Origin": origin, "Vary": "Origin"}
    if preflight:
        headers.update({"Access-Control-Allow-Methods": "GET, POST",
                        "Access-Control-Allow-Headers": "Content-Type, Authorization",
                        "Access-Control-Max-Age": "600"})
    return headers
