// Signing in with WeChat: wx.login's code goes to the service, which finds the openid, so the
// same user on two phones is one owner; a service without WeChat gives an anonymous token.

const { createFakeWx } = require("../support/fake-wx.js");
const { FakeService } = require("../support/fake-service.js");
const api = require("../../utils/api.js");

function phone(service, user) {
  const fake = createFakeWx({ service });
  fake.wechatUser = user;
  global.wx = fake.wx;
  api.setBase(service.base);
  api.forgetSession();
  return fake;
}

test("one WeChat user on two phones gets tokens of one owner", async () => {
  const service = new FakeService();
  service.wechatCodes = new Map();
  const first = phone(service, "oUSER12345678");
  const token1 = await api.ensureSession();
  expect(api.ownerId()).toBe("wx_oUSER12345678");
  expect(first.called("login")).toHaveLength(1);
  const login = first.called("request").find((r) => r.url.endsWith("/sessions/wechat"));
  expect(JSON.parse(login.data)).toEqual({ code: "code-1" });
  expect(login.header.Authorization).toBeUndefined();

  phone(service, "oUSER12345678");
  const token2 = await api.ensureSession();
  expect(token2).not.toBe(token1);
  expect(api.ownerId()).toBe("wx_oUSER12345678");
});

test("a service without WeChat login gives an anonymous token", async () => {
  const service = new FakeService();
  const fake = phone(service, "oUSER12345678");
  await api.ensureSession();
  expect(api.ownerId()).toMatch(/^own_/);
  const paths = fake.called("request").map((r) => r.url.replace(service.base, ""));
  expect(paths).toEqual(["/api/v1/sessions/wechat", "/api/v1/sessions"]);
});
