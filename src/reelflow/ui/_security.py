"""Access control for the UI: token login, session cookie, CSRF tokens, Host checks, headers.

- Without a token the UI binds to loopback only (the CLI refuses anything else) and
  answers only requests whose ``Host`` is a loopback name, so a web page elsewhere
  cannot reach it through DNS rebinding.
- With a token every route but ``/login`` and ``/healthz`` needs it: as
  ``Authorization: Bearer TOKEN``, or as the session cookie set after a login
  (an HMAC of the token, compared in constant time).
- Every POST carries a CSRF token equal to the ``reelflow_csrf`` cookie (double
  submit, SameSite=Strict cookie, constant-time compare).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

__all__ = ["Guard", "SESSION_COOKIE", "CSRF_COOKIE", "LOOPBACK_HOSTS", "SECURITY_HEADERS", "CARD_HEADERS"]

SESSION_COOKIE = "reelflow_ui_session"
CSRF_COOKIE = "reelflow_csrf"
LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1", "[::1]"}

SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
                               "frame-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
                               "frame-ancestors 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}
# A card runs its own chart scripts inline, inside a sandboxed frame with no access to the UI.
CARD_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; img-src data:; style-src 'unsafe-inline'; "
                               "script-src 'unsafe-inline' 'unsafe-eval'; sandbox allow-scripts; "
                               "frame-ancestors 'self'",
    "X-Content-Type-Options": "nosniff",
}


class Guard:
    """Token and session checks for one UI process."""

    def __init__(self, token: str | None, *, loopback_only: bool) -> None:
        self.token = token or None
        self.loopback_only = loopback_only
        self._session = (hmac.new(token.encode(), b"reelflow-ui-session", hashlib.sha256).hexdigest()
                         if token else None)

    def host_ok(self, host_header: str | None) -> bool:
        """Whether the Host header names this machine's loopback (always true when a token guards the UI)."""
        if not self.loopback_only:
            return True
        host = (host_header or "").strip().lower()
        if host.startswith("["):
            name = host.split("]")[0] + "]"
        else:
            name = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
        return name in LOOPBACK_HOSTS

    def token_ok(self, given: str | None) -> bool:
        """Constant-time check of a presented token."""
        if self.token is None:
            return True
        return given is not None and hmac.compare_digest(given.encode(), self.token.encode())

    def session_value(self) -> str:
        assert self._session is not None
        return self._session

    def authorised(self, *, cookie: str | None, authorization: str | None) -> bool:
        """Whether a request may proceed: no token configured, a valid session cookie or a Bearer token."""
        if self.token is None:
            return True
        if cookie and self._session and hmac.compare_digest(cookie.encode(), self._session.encode()):
            return True
        if authorization:
            scheme, _, value = authorization.partition(" ")
            if scheme.lower() == "bearer" and self.token_ok(value.strip()):
                return True
        return False


def new_csrf() -> str:
    """A fresh CSRF token (the cookie's value; forms echo it)."""
    return secrets.token_urlsafe(24)


def csrf_ok(cookie: str | None, submitted: str | None) -> bool:
    """Double-submit check: the form's token equals the cookie's (constant time)."""
    return bool(cookie) and bool(submitted) and hmac.compare_digest(str(cookie).encode(), str(submitted).encode())
