"""``/docs``: the API documentation works under the service's own Content-Security-Policy,
with every asset it needs served by the service itself (nothing fetched from elsewhere)."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient


def test_the_documentation_page_needs_nothing_from_elsewhere(client: TestClient) -> None:
    page = client.get("/docs")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "script-src 'self'" in page.headers["content-security-policy"]
    html = page.text
    # Inline scripts are refused by the policy: every script must come from a URL.
    scripts = re.findall(r"<script\b([^>]*)>(.*?)</script>", html, flags=re.S)
    assert scripts
    for attributes, body in scripts:
        assert "src=" in attributes
        assert body.strip() == ""
    assert "<style" not in html
    references = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert len(references) >= 3
    types = {".js": "javascript", ".css": "text/css", ".png": "image/png"}
    for url in references:
        assert url.startswith("/"), url  # same origin, no CDN
        answer = client.get(url)
        assert answer.status_code == 200, url
        kind = next(v for k, v in types.items() if url.endswith(k))
        assert kind in answer.headers["content-type"], url
        assert len(answer.content) > 1000 or url.endswith("docs-init.js"), url
    init = next(u for u in references if u.endswith("docs-init.js"))
    script = client.get(init).text
    assert "/openapi.json" in script
    # Swagger UI's default validator badge loads an image from swagger.io: turned off.
    assert "validatorUrl: null" in script
