"""The jobs page for people, at /ui: plain HTML, CSS and JavaScript from service/static/jobs/, no CDN and
no build step. The page calls the same API as any integration, with the key a person pastes (kept in the
tab's session storage); its Content-Security-Policy lets it load nothing but its own files and talk to
nothing but this service.
"""

from __future__ import annotations

from pathlib import Path

from litestar import Response, Router
from litestar.static_files import create_static_files_router

PAGE = Path(__file__).parent / "static" / "jobs"
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self';"
        " form-action 'none'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


def _secure(response: Response) -> Response:  # type: ignore[type-arg]
    response.headers.update(SECURITY_HEADERS)
    return response


def jobs_page_router() -> Router:
    return create_static_files_router(
        path="/ui", directories=[PAGE], html_mode=True, name="jobs-page", after_request=_secure
    )
