"""WeChat users: wx.login's code exchanged for the openid (code2Session) and a token of the
same owner on every phone; a subscription notice when a job ends. Against a stand-in of
WeChat's server API with its real paths and answers."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from beatsync.service import wechat
from beatsync.service.config import Settings
from beatsync.service.db import Job, Owner
from beatsync.service.db.models import new_id
from beatsync.service.jobs.run import run_job
from job_env import JobEnv
from wechat_standin import WeChatStandIn

APP_ID, SECRET = "wx1234567890abcdef", "s3cr3t"
OPENID = "oABCD1234efgh5678ijkl9012mnop"


@pytest.fixture
def standin() -> Iterator[WeChatStandIn]:
    made = WeChatStandIn(APP_ID, SECRET)
    wechat._tokens.clear()
    yield made
    made.close()


def wechat_settings(standin: WeChatStandIn) -> dict[str, object]:
    return {
        "wechat_app_id": APP_ID,
        "wechat_app_secret": SECRET,
        "wechat_api_base": standin.url,
        "wechat_notify_template_id": "tmpl-done",
    }


@pytest.fixture
def wx_client(
    make_client: Callable[..., TestClient],
    make_settings: Callable[..., Settings],
    standin: WeChatStandIn,
) -> TestClient:
    return make_client(make_settings(**wechat_settings(standin)))


def test_logins_of_one_user_on_two_phones_are_one_owner(
    wx_client: TestClient, standin: WeChatStandIn
) -> None:
    first = wx_client.post("/api/v1/sessions/wechat", json={"code": standin.issue_code(OPENID)})
    assert first.status_code == 201, first.text
    second = wx_client.post("/api/v1/sessions/wechat", json={"code": standin.issue_code(OPENID)})
    one, two = first.json(), second.json()
    assert one["owner_id"] == two["owner_id"] == f"wx_{OPENID}"
    assert one["token"] != two["token"]
    assert one["token"].startswith("bst_")
    for token in (one["token"], two["token"]):
        me = wx_client.get("/api/v1/sessions/me", headers={"Authorization": f"Bearer {token}"})
        assert me.json() == {"owner_id": f"wx_{OPENID}"}
    [call, _] = standin.of("/sns/jscode2session")
    assert call["method"] == "GET"
    assert set(call["query"]) == {"appid", "secret", "js_code", "grant_type"}
    assert (call["query"]["appid"], call["query"]["grant_type"]) == (APP_ID, "authorization_code")
    other = wx_client.post("/api/v1/sessions/wechat", json={"code": standin.issue_code("oOTHER")})
    assert other.json()["owner_id"] == "wx_oOTHER"


def test_a_bad_or_used_code_and_a_busy_wechat_are_coded(
    wx_client: TestClient, standin: WeChatStandIn
) -> None:
    code = standin.issue_code(OPENID)
    assert wx_client.post("/api/v1/sessions/wechat", json={"code": code}).status_code == 201
    used = wx_client.post("/api/v1/sessions/wechat", json={"code": code})
    assert (used.status_code, used.json()["code"]) == (401, "WECHAT_LOGIN_FAILED")
    standin.busy = True
    busy = wx_client.post("/api/v1/sessions/wechat", json={"code": standin.issue_code(OPENID)})
    assert (busy.status_code, busy.json()["code"]) == (503, "WECHAT_UNAVAILABLE")
    assert busy.json()["retryable"] is True
    empty = wx_client.post("/api/v1/sessions/wechat", json={"code": ""})
    assert empty.status_code == 422


def test_without_an_app_id_wechat_login_is_not_offered(client: TestClient) -> None:
    answer = client.post("/api/v1/sessions/wechat", json={"code": "abc"})
    assert (answer.status_code, answer.json()["code"]) == (404, "WECHAT_NOT_CONFIGURED")


def test_a_job_end_notice_goes_through_stable_token_and_subscribe_send(
    make_settings: Callable[..., Settings], standin: WeChatStandIn
) -> None:
    settings = make_settings(**wechat_settings(standin))
    standin.subscribed.add(OPENID)
    wechat.notify_job_end(settings, f"wx_{OPENID}", "job_1", "succeeded")
    [token_call] = standin.of("/cgi-bin/stable_token")
    assert token_call["method"] == "POST"
    assert token_call["body"] == {
        "grant_type": "client_credential",
        "appid": APP_ID,
        "secret": SECRET,
        "force_refresh": False,
    }
    [send] = standin.of("/cgi-bin/message/subscribe/send")
    assert send["query"]["access_token"] in standin.tokens
    body = send["body"]
    assert body["touser"] == OPENID
    assert body["template_id"] == "tmpl-done"
    assert body["page"] == "pages/job/job?id=job_1"
    assert set(body["data"]) == {"thing1", "phrase2", "time3"}
    assert body["data"]["phrase2"] == {"value": "已完成"}
    assert (body["miniprogram_state"], body["lang"]) == ("formal", "zh_CN")
    # The token is kept; one WeChat revoked is fetched again once.
    wechat.notify_job_end(settings, f"wx_{OPENID}", "job_2", "failed")
    assert len(standin.of("/cgi-bin/stable_token")) == 1
    standin.expire()
    wechat.notify_job_end(settings, f"wx_{OPENID}", "job_3", "failed")
    sends = standin.of("/cgi-bin/message/subscribe/send")
    assert len(standin.of("/cgi-bin/stable_token")) == 2
    assert standin.of("/cgi-bin/stable_token")[1]["body"]["force_refresh"] is True
    assert sends[-1]["body"]["data"]["phrase2"] == {"value": "处理失败"}


def test_no_notice_for_other_owners_or_unsubscribed_users(
    make_settings: Callable[..., Settings], standin: WeChatStandIn
) -> None:
    settings = make_settings(**wechat_settings(standin))
    wechat.notify_job_end(settings, "own_anonymous", "job_1", "succeeded")
    assert standin.requests == []
    wechat.notify_job_end(settings, f"wx_{OPENID}", "job_1", "succeeded")  # 43101: quiet
    assert len(standin.of("/cgi-bin/message/subscribe/send")) == 1


def test_a_finished_run_notifies_its_wechat_owner(tmp_path: Path, standin: WeChatStandIn) -> None:
    env = JobEnv(tmp_path, **wechat_settings(standin))
    standin.subscribed.add(OPENID)
    try:
        not_media = tmp_path / "notes.mp4"
        not_media.write_bytes(b"not a video at all" * 64)
        owner = f"wx_{OPENID}"
        with env.db.session() as session:
            session.add(Owner(id=owner, kind="wechat"))
        dance, bgm = env.upload(not_media), env.upload(not_media)
        job_id = new_id("job")
        with env.db.session() as session:
            session.add(
                Job(
                    id=job_id,
                    owner_id=owner,
                    dance_upload_id=dance,
                    bgm_upload_id=bgm,
                    options={"nudge_ms": 0.0, "trim": True},
                    cache_key=job_id,
                )
            )
        assert run_job(job_id, settings=env.settings, db=env.db) == "failed"
        [send] = standin.of("/cgi-bin/message/subscribe/send")
        assert send["body"]["page"] == f"pages/job/job?id={job_id}"
        assert send["body"]["data"]["phrase2"] == {"value": "处理失败"}
    finally:
        env.close()
