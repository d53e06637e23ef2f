"""``/docs``: Swagger UI for the API, served whole by the service.

FastAPI's own page loads Swagger UI from a CDN and starts it with an inline script; the
service's Content-Security-Policy (``script-src 'self'``) refuses both, and a service meant to
run without the internet must not need a CDN. Here the page is plain HTML, Swagger UI's script
and style come from the ``fastapi-offline`` package (which ships them) and the page's start-up
is a script file of its own.
"""

from __future__ import annotations

from importlib import resources

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, Response

from beatsync.service.errors import ServiceError

__all__ = ["router"]

router = APIRouter(include_in_schema=False)

ASSETS = {
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui.css": "text/css; charset=utf-8",
    "favicon.png": "image/png",
}
# The bytes of a release never change; a new release of the package is a new process.
_CACHE = "public, max-age=86400"

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>BeatSync API</title>
<link rel="icon" type="image/png" href="/docs/assets/favicon.png">
<link rel="stylesheet" href="/docs/assets/swagger-ui.css">
</head>
<body>
<div id="swagger-ui"></div>
<script src="/docs/assets/swagger-ui-bundle.js"></script>
<script src="/docs/assets/docs-init.js"></script>
</body>
</html>
"""

INIT = """// Starts Swagger UI on this service's OpenAPI document (a file: the page allows no inline
// script). No validator: its badge would be an image from another site.
window.ui = SwaggerUIBundle({
  url: "/openapi.json",
  dom_id: "#swagger-ui",
  layout: "BaseLayout",
  deepLinking: true,
  showExtensions: true,
  showCommonExtensions: true,
  validatorUrl: null,
  presets: [SwaggerUIBundle.presets.apis, SwaggerUIBundle.SwaggerUIStandalonePreset],
});
"""


@router.get("/docs")
def docs_page() -> HTMLResponse:
    return HTMLResponse(PAGE)


@router.get("/docs/assets/docs-init.js")
def docs_init() -> Response:
    return Response(INIT, media_type="text/javascript; charset=utf-8")


@router.get("/docs/assets/{name}")
def docs_asset(name: str) -> Response:
    if name not in ASSETS:
        raise ServiceError("NOT_FOUND", f"no documentation asset {name}")
    data = (resources.files("fastapi_offline") / "static" / name).read_bytes()
    return Response(data, media_type=ASSETS[name], headers={"Cache-Control": _CACHE})
