"""A stand-in for WeChat's server API on 127.0.0.1, answering with WeChat's real shapes.

- ``GET /sns/jscode2session``: a code the test issued (``issue_code``) gives its openid once;
  any other, or a used one, ``{"errcode": 40029, "errmsg": "invalid code"}``; ``busy`` makes it
  answer ``{"errcode": -1, "errmsg": "system error"}``.
- ``POST /cgi-bin/stable_token``: ``{"access_token", "expires_in": 7200}`` for the right
  app id and secret, else ``{"errcode": 40125, "errmsg": "invalid appsecret"}``.
- ``POST /cgi-bin/message/subscribe/send``: 0 for a subscribed openid, 43101 for another,
  40001 for a token it did not issue (or ``expire()`` revoked).

Every request is kept in ``requests`` (method, path, query, JSON body).
"""

from __future__ import annotations

import json
import secrets
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

__all__ = ["WeChatStandIn"]


class WeChatStandIn:
    def __init__(self, app_id: str, secret: str) -> None:
        self.app_id, self.secret = app_id, secret
        self.codes: dict[str, str] = {}
        self.subscribed: set[str] = set()
        self.tokens: set[str] = set()
        self.requests: list[dict[str, Any]] = []
        self.busy = False
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                self._answer(None)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                self._answer(json.loads(self.rfile.read(length) or b"null"))

            def _answer(self, body: Any) -> None:
                url = urlsplit(self.path)
                query = {k: v[0] for k, v in parse_qs(url.query).items()}
                stand_in.requests.append(
                    {"method": self.command, "path": url.path, "query": query, "body": body}
                )
                payload = json.dumps(stand_in.route(url.path, query, body)).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def issue_code(self, openid: str) -> str:
        """What wx.login would give that user now."""
        code = secrets.token_hex(16)
        self.codes[code] = openid
        return code

    def expire(self) -> None:
        self.tokens.clear()

    def of(self, path: str) -> list[dict[str, Any]]:
        return [r for r in self.requests if r["path"] == path]

    def route(self, path: str, query: dict[str, str], body: Any) -> dict[str, Any]:
        if path == "/sns/jscode2session":
            if self.busy:
                return {"errcode": -1, "errmsg": "system error"}
            if (query.get("appid"), query.get("secret")) != (self.app_id, self.secret):
                return {"errcode": 40013, "errmsg": "invalid appid"}
            openid = self.codes.pop(query.get("js_code", ""), None)
            if openid is None or query.get("grant_type") != "authorization_code":
                return {"errcode": 40029, "errmsg": "invalid code"}
            return {"openid": openid, "session_key": secrets.token_urlsafe(16)}
        if path == "/cgi-bin/stable_token":
            if body.get("appid") != self.app_id or body.get("secret") != self.secret:
                return {"errcode": 40125, "errmsg": "invalid appsecret"}
            if body.get("grant_type") != "client_credential":
                return {"errcode": 40002, "errmsg": "invalid grant_type"}
            token = secrets.token_urlsafe(24)
            self.tokens.add(token)
            return {"access_token": token, "expires_in": 7200}
        if path == "/cgi-bin/message/subscribe/send":
            if query.get("access_token") not in self.tokens:
                return {"errcode": 40001, "errmsg": "invalid credential"}
            if body.get("touser") not in self.subscribed:
                return {"errcode": 43101, "errmsg": "user refuse to accept the msg"}
            return {"errcode": 0, "errmsg": "ok"}
        return {"errcode": 404, "errmsg": "unknown path"}
