"""HTTP security of the webmail: response headers, the Content-Security-Policy, and CSRF checks.

Every page gets a strict CSP (scripts, styles, images, fonts and connections from the webmail itself
only; no inline script; no framing by other sites), `nosniff`, `no-referrer` (links in mail must not
leak the webmail's URLs) and `no-store` on personal pages. The body of a message is shown in a sandboxed
frame with a CSP of its own (`MESSAGE_BODY_CSP`): no script at all, and remote images only once the
reader asked for them.

A request that changes something (POST, PUT, PATCH, DELETE) must come from the webmail's own origin
(`Origin`, else `Referer`) and carry the session's CSRF token, in the `csrf_token` form field or the
`X-CSRF-Token` header (htmx and fetch send the header).
"""

from __future__ import annotations

import secrets
import urllib.parse

from aiohttp import web

CSP = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "font-src 'self'",
        "connect-src 'self'",
        "media-src 'self' data:",
        "manifest-src 'self'",
        "frame-src 'self'",
        "form-action 'self'",
        "frame-ancestors 'self'",
        "base-uri 'none'",
        "object-src 'none'",
    ]
)


def message_body_csp(allow_remote_images: bool) -> str:
    """The CSP of a sanitised message body: inline styles of the mail, never a script or a form."""
    images = "img-src data: cid: https: http:" if allow_remote_images else "img-src data:"
    return "; ".join(
        [
            "default-src 'none'",
            "style-src 'unsafe-inline'",
            images,
            "font-src data:",
            "form-action 'none'",
            "frame-ancestors 'self'",
            "base-uri 'none'",
            "sandbox allow-popups allow-popups-to-escape-sandbox",
        ]
    )


SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "SAMEORIGIN",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=(), payment=(), usb=()",
}

UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"


def apply_headers(request: web.Request, response: web.StreamResponse) -> None:
    """Add the security headers a response lacks (a handler may have set its own CSP)."""
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    response.headers.setdefault("Content-Security-Policy", CSP)
    if not request.path.startswith("/static/"):
        response.headers.setdefault("Cache-Control", "no-store")


def _origin_of(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    if not parts.scheme or not parts.netloc:
        return ""
    return f"{parts.scheme}://{parts.netloc}".lower()


def same_origin(request: web.Request, public_url: str) -> bool:
    """True when the request says it comes from the webmail's own origin.

    Browsers send `Origin` on every cross-site POST. Under our `Referrer-Policy: no-referrer` they send
    `Origin: null` (and no `Referer`) for a form posted by our own pages, so a `null` or missing origin
    is judged by `Sec-Fetch-Site` (set by the browser, never by a page's script): only `same-origin`
    passes — a foreign page that hides its origin the same way is `cross-site`. Older browsers without
    it fall back to `Referer`. A request with none of them is refused.
    """
    allowed = {_origin_of(public_url), f"{request.scheme}://{request.host}".lower()}
    origin = request.headers.get("Origin")
    if origin and origin != "null":
        return origin.lower() in allowed
    fetch_site = request.headers.get("Sec-Fetch-Site")
    if fetch_site:
        return fetch_site == "same-origin"
    referer = request.headers.get("Referer")
    if referer:
        return _origin_of(referer) in allowed
    return False


def csrf_token_matches(expected: str, given: str | None) -> bool:
    """Constant-time comparison of the session's CSRF token and the one the request carries."""
    return bool(expected) and bool(given) and secrets.compare_digest(expected, given)
