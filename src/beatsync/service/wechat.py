"""WeChat's server API for the mini-program: signing its users in, and a notice when a job ends.

The calls, with the shapes WeChat documents (``wechat_api_base`` is https://api.weixin.qq.com):

- ``GET /sns/jscode2session?appid=…&secret=…&js_code=…&grant_type=authorization_code``
  (code2Session) → ``{"openid", "session_key", "unionid"?}``, or ``{"errcode", "errmsg"}``:
  40029 the code is invalid or used, 40226 a blocked user, 45011 too frequent, -1 busy.
- ``POST /cgi-bin/stable_token`` ``{"grant_type": "client_credential", "appid", "secret"}`` →
  ``{"access_token", "expires_in"}`` (the same token until it nearly expires).
- ``POST /cgi-bin/message/subscribe/send?access_token=…`` ``{"touser", "template_id", "page",
  "data": {key: {"value"}}, "miniprogram_state", "lang"}`` → ``{"errcode": 0}``; 43101 when the
  user did not accept the subscription (then nothing is sent, which is not an error).

A WeChat user's owner id is ``wx_`` + the openid, so every login of that user, on any phone,
gets a token of the same owner and finds the same jobs; the openid a notice goes to is read back
from the owner id, nothing else is stored.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from datetime import UTC, datetime, timedelta
from typing import Any

from .config import Settings
from .errors import ServiceError

__all__ = ["WeChat", "notify_job_end", "openid_of", "owner_id_for"]

log = logging.getLogger(__name__)

OWNER_PREFIX = "wx_"
_OPENID = re.compile(r"^[A-Za-z0-9_-]{6,37}$")
_NOT_SUBSCRIBED = 43101
_TOKEN_EXPIRED = (40001, 42001)
_BEIJING = timedelta(hours=8)
_tokens: dict[str, tuple[str, float]] = {}
_tokens_lock = threading.Lock()


def owner_id_for(openid: str) -> str:
    if not _OPENID.match(openid):
        raise ServiceError("WECHAT_UNAVAILABLE", "WeChat answered an openid of an unknown form")
    return OWNER_PREFIX + openid


def openid_of(owner_id: str) -> str | None:
    return owner_id[len(OWNER_PREFIX) :] if owner_id.startswith(OWNER_PREFIX) else None


class WeChat:
    """The calls above for one mini-program (app id and secret from the settings)."""

    def __init__(self, settings: Settings, *, timeout_s: float = 5.0) -> None:
        self.settings = settings
        self.base = settings.wechat_api_base.rstrip("/")
        self.app_id = settings.wechat_app_id
        self.secret = settings.wechat_app_secret.get_secret_value()
        self.timeout_s = timeout_s

    @property
    def configured(self) -> bool:
        return bool(self.app_id and self.secret)

    def _call(self, path: str, *, query: dict[str, str], body: Any = None) -> dict[str, Any]:
        url = f"{self.base}{path}?{urllib.parse.urlencode(query)}"
        data = None if body is None else json.dumps(body, ensure_ascii=False).encode()
        request = urllib.request.Request(url, data=data, method="GET" if data is None else "POST")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                answer = json.loads(response.read().decode("utf-8"))
        except (OSError, ValueError) as exc:
            raise ServiceError("WECHAT_UNAVAILABLE", f"WeChat {path}: {exc}") from exc
        if not isinstance(answer, dict):
            raise ServiceError("WECHAT_UNAVAILABLE", f"WeChat {path} answered no object")
        return answer

    def code2session(self, code: str) -> str:
        """The openid of the user whose ``wx.login`` gave ``code``."""
        if not self.configured:
            raise ServiceError("WECHAT_NOT_CONFIGURED", "BEATSYNC_WECHAT_APP_ID/SECRET are unset")
        answer = self._call(
            "/sns/jscode2session",
            query={
                "appid": self.app_id,
                "secret": self.secret,
                "js_code": code,
                "grant_type": "authorization_code",
            },
        )
        errcode = int(answer.get("errcode") or 0)
        if errcode in (-1, 45011):
            raise ServiceError("WECHAT_UNAVAILABLE", f"code2Session: {answer.get('errmsg')}")
        if errcode or not isinstance(answer.get("openid"), str):
            raise ServiceError("WECHAT_LOGIN_FAILED", f"code2Session {errcode}")
        return str(answer["openid"])

    def access_token(self, *, fresh: bool = False) -> str:
        """The stable access token, kept until five minutes before it expires."""
        with _tokens_lock:
            kept = _tokens.get(self.app_id)
            if kept and not fresh and kept[1] > time.monotonic():
                return kept[0]
        answer = self._call(
            "/cgi-bin/stable_token",
            query={},
            body={
                "grant_type": "client_credential",
                "appid": self.app_id,
                "secret": self.secret,
                "force_refresh": fresh,
            },
        )
        token = answer.get("access_token")
        if not isinstance(token, str):
            raise ServiceError("WECHAT_UNAVAILABLE", f"stable_token {answer.get('errcode')}")
        lifetime = float(answer.get("expires_in") or 7200)
        with _tokens_lock:
            _tokens[self.app_id] = (token, time.monotonic() + max(60.0, lifetime - 300))
        return token

    def send_notice(self, openid: str, page: str, values: list[str]) -> bool:
        """Send the job-end template; False when the user did not subscribe."""
        keys = [k.strip() for k in self.settings.wechat_notify_keys.split(",") if k.strip()]
        body = {
            "touser": openid,
            "template_id": self.settings.wechat_notify_template_id,
            "page": page,
            "data": {key: {"value": value} for key, value in zip(keys, values, strict=False)},
            "miniprogram_state": self.settings.wechat_notify_state,
            "lang": "zh_CN",
        }
        for fresh in (False, True):
            token = self.access_token(fresh=fresh)
            answer = self._call(
                "/cgi-bin/message/subscribe/send", query={"access_token": token}, body=body
            )
            errcode = int(answer.get("errcode") or 0)
            if errcode in _TOKEN_EXPIRED and not fresh:
                continue
            if errcode == _NOT_SUBSCRIBED:
                return False
            if errcode:
                raise ServiceError("WECHAT_UNAVAILABLE", f"subscribe/send {errcode}")
            return True
        return False


def notify_job_end(settings: Settings, owner_id: str, job_id: str, status: str) -> None:
    """Tell a WeChat user that a job ended (best effort: a failure is logged, never raised)."""
    openid = openid_of(owner_id)
    wechat = WeChat(settings)
    if openid is None or not settings.wechat_notify_template_id or not wechat.configured:
        return
    when = (datetime.now(UTC) + _BEIJING).strftime("%Y-%m-%d %H:%M")
    outcome = "已完成" if status == "succeeded" else "处理失败"
    try:
        sent = wechat.send_notice(
            openid, f"pages/job/job?id={job_id}", ["舞蹈视频配乐对齐", outcome, when]
        )
    except ServiceError as exc:
        log.warning("job %s: no WeChat notice: %s", job_id, exc, extra={"job_id": job_id})
        return
    log.info(
        "job %s: WeChat notice %s",
        job_id,
        "sent" if sent else "not subscribed",
        extra={"job_id": job_id},
    )
