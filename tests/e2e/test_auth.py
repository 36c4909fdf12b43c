"""AuthService end to end: SMS codes, sign-in, tokens, refresh rotation,
sessions per device, passwords, step-up and staff roles. Each test is one
rule of proto/fxb/v1/auth.proto and the auth modules' contracts."""
import re
import shutil
import tempfile
import time

import grpc

import fxbtest as t

UNAUTH = grpc.StatusCode.UNAUTHENTICATED
INVALID = grpc.StatusCode.INVALID_ARGUMENT
EXHAUSTED = grpc.StatusCode.RESOURCE_EXHAUSTED
DENIED = grpc.StatusCode.PERMISSION_DENIED
NOT_FOUND = grpc.StatusCode.NOT_FOUND

ISSUER = "https://fxb.xinxiang.gov.cn"
AUDIENCE = "fxb-app"
ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")

# What a server log must never hold: mobile numbers (an 11-digit run not
# part of a longer word, so request ids and timestamps do not count), access
# tokens, refresh tokens, SMS texts.
LOG_FORBIDDEN = (
    ("a phone number", re.compile(r"(?<![0-9A-Za-z_-])1[3-9][0-9]{9}(?![0-9A-Za-z_-])")),
    ("an access token", re.compile(r"eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}")),
    ("a refresh token", re.compile(r"[A-Za-z0-9_-]{10,64}\.[A-Za-z0-9_-]{10,64}\."
                                   r"[A-Za-z0-9_-]{43}(?![A-Za-z0-9_-])")),
    ("an SMS text", re.compile("验证码")),
)


def now_ms():
    return int(time.time() * 1000)


class AuthTestCase(t.TestCase):
    """One server (with high daily code caps) shared by the tests of a class."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.A = t.auth_pb()
        cls.D = t.diag_pb()
        cls.srv = t.Server(extra_env=t.AUTH_ENV).__enter__()

    @classmethod
    def tearDownClass(cls):
        try:
            log = cls.srv.log()
        finally:
            cls.srv.__exit__(None, None, None)
        # nothing secret or personal reached the log of the class's server
        for what, pattern in LOG_FORBIDDEN:
            m = pattern.search(log)
            if m:
                raise AssertionError("the server log holds %s: %r" % (what, m.group(0)[:40]))

    # small wrappers
    def call(self, method, req, token=None, srv=None, **kw):
        return t.auth_call(srv or self.srv, method, req, token=token, **kw)

    def get_me(self, token, srv=None):
        return self.call("GetMe", self.A.GetMeRequest(), token=token, srv=srv)

    def device(self, device_id=None, name="测试手机"):
        return self.A.Device(device_id=t.random_device_id() if device_id is None else device_id,
                             name=name)

    def code_for(self, phone, purpose=None, srv=None):
        srv = srv or self.srv
        t.allow_resend(srv, phone)
        t.send_code(srv, phone, purpose)
        return t.last_code(phone, srv.redis_url)

    def sign_in_code(self, phone, code, device=None, srv=None):
        return self.call("SignInWithCode", self.A.SignInWithCodeRequest(
            phone=phone, code=code, device=device or self.device()), srv=srv)

    def probe(self, name, token, department="", srv=None):
        fn = (srv or self.srv).unary("/fxb.v1.DiagService/" + name, self.D.ProbeRequest,
                                     self.D.ProbeResponse)
        return fn(self.D.ProbeRequest(department=department), metadata=t.bearer(token),
                  timeout=20)

    def assertSessionRevoked(self, token, srv=None):
        self.assertCallFails(lambda: self.get_me(token, srv), UNAUTH, "SESSION_REVOKED")

    def assertRetryAfter(self, err, low_s, high_s):
        ri = t.retry_info(err)
        self.assertIsNotNone(ri, "no google.rpc.RetryInfo in the status details")
        delay = ri.retry_delay.seconds + ri.retry_delay.nanos / 1e9
        self.assertGreaterEqual(delay, low_s)
        self.assertLessEqual(delay, high_s)


# --- SendCode --------------------------------------------------------------

class SendCodeTest(AuthTestCase):
    def test_malformed_numbers_are_refused_as_phone_invalid(self):
        good = t.random_phone("138")
        for bad in (good[:10],                  # 10 digits
                    "12" + good[2:],            # 12x is not a mobile prefix
                    good[:10] + "a",            # a letter
                    "abcdefghijk",
                    "",
                    "+86 " + good,              # a space
                    "+86-" + good,
                    "８" + good[1:],            # a full-width digit
                    good + "0",                 # 12 digits
                    "1" * 1000):                # long, within the method's size bound
            with self.subTest(phone=bad[:20]):
                self.assertCallFails(lambda: t.send_code(self.srv, bad), INVALID,
                                     "PHONE_INVALID")

    def test_ten_kilobyte_phone_is_refused_by_the_request_size_bound(self):
        # SendCode requests are bounded to 1 KB by the method table: the
        # runtime refuses before the handler sees the number
        self.assertCallFails(lambda: t.send_code(self.srv, "1" * 10240), EXHAUSTED,
                             "MESSAGE_TOO_LARGE")

    def test_plus86_form_is_accepted_masked_with_validity_and_resend_times(self):
        phone = t.random_phone("138")
        before = now_ms()
        r = t.send_code(self.srv, "+86" + phone)
        after = now_ms()
        self.assertEqual(r.masked_phone, phone[:3] + "****" + phone[7:])
        self.assertGreaterEqual(r.expires_at_ms, before + 300000 - 1000)
        self.assertLessEqual(r.expires_at_ms, after + 300000 + 1000)
        self.assertGreaterEqual(r.resend_after_ms, before + 60000 - 1000)
        self.assertLessEqual(r.resend_after_ms, after + 60000 + 1000)
        # the code went to the bare number, and works with the bare form
        code = t.last_code(phone, self.srv.redis_url)
        tok = self.sign_in_code(phone, code)
        self.assertTrue(tok.access_token)
        self.assertNotIn(phone, r.masked_phone)
        # "86" without the plus is the same number too
        other = t.random_phone("150")
        self.assertEqual(t.send_code(self.srv, "86" + other).masked_phone,
                         other[:3] + "****" + other[7:])
        self.assertTrue(self.sign_in_code("+86" + other,
                                          t.last_code(other, self.srv.redis_url)).access_token)

    def test_second_code_within_60_s_is_resend_too_soon_with_retry_info(self):
        phone = t.random_phone()
        t.send_code(self.srv, phone)
        err = self.assertCallFails(lambda: t.send_code(self.srv, phone), EXHAUSTED,
                                   "CODE_RESEND_TOO_SOON")
        self.assertRetryAfter(err, 50, 60)
        # the marker is per number, whatever the purpose
        self.assertCallFails(lambda: t.send_code(self.srv, phone,
                                                 self.A.CODE_PURPOSE_STEP_UP),
                             EXHAUSTED, "CODE_RESEND_TOO_SOON")

    def test_unsupported_purpose_is_invalid_argument(self):
        for purpose in (self.A.CODE_PURPOSE_VERIFY_RELATIVE, 99, -1):
            with self.subTest(purpose=purpose):
                self.assertCallFails(lambda: t.send_code(self.srv, t.random_phone(), purpose),
                                     INVALID, "CODE_PURPOSE_INVALID")

    def test_daily_cap_per_client_address(self):
        with t.Server(extra_env={"FXB_OTP_DAILY_IP": "3", "FXB_OTP_DAILY_PHONE": "1000"}) as srv:
            first = t.random_phone()
            t.send_code(srv, first)
            # refused sends do not count against the address
            for _ in range(3):
                self.assertCallFails(lambda: t.send_code(srv, first), EXHAUSTED,
                                     "CODE_RESEND_TOO_SOON")
                self.assertCallFails(lambda: t.send_code(srv, "12345"), INVALID,
                                     "PHONE_INVALID")
            for _ in range(2):
                t.send_code(srv, t.random_phone())
            err = self.assertCallFails(lambda: t.send_code(srv, t.random_phone()), EXHAUSTED,
                                       "CODE_DAILY_LIMIT_IP")
            self.assertRetryAfter(err, 1, 24 * 3600 + 3600)

    def test_daily_cap_per_phone(self):
        # the 60 s resend marker is cleared between sends (a test cannot
        # wait); the daily counter is what is checked
        with t.Server(extra_env={"FXB_OTP_DAILY_IP": "100000", "FXB_OTP_DAILY_PHONE": "2"}) as srv:
            phone = t.random_phone()
            t.send_code(srv, phone)
            t.allow_resend(srv, phone)
            t.send_code(srv, phone)
            t.allow_resend(srv, phone)
            err = self.assertCallFails(lambda: t.send_code(srv, phone), EXHAUSTED,
                                       "CODE_DAILY_LIMIT_PHONE")
            self.assertRetryAfter(err, 1, 24 * 3600 + 3600)
            # another number is not affected
            t.send_code(srv, t.random_phone())

    def test_codes_and_numbers_are_never_stored_in_clear(self):
        # a private Redis, so that the scan sees only this test's keys
        with t.Redis() as redis, t.Server(extra_env=t.AUTH_ENV, redis_url=redis.url) as srv:
            phone = t.random_phone()
            t.send_code(srv, phone)
            code = t.last_code(phone, redis.url)
            step_phone = t.random_phone()
            who = t.sign_in(srv, step_phone)
            t.allow_resend(srv, step_phone)
            t.send_code(srv, step_phone, self.A.CODE_PURPOSE_STEP_UP)
            step_code = t.last_code(step_phone, redis.url)

            def scan(what):
                code_re = re.compile(rb"(?<![0-9])(%s|%s)(?![0-9])" %
                                     (code.encode(), step_code.encode()))
                dump = t.redis_dump(redis.url)
                self.assertTrue(dump, "nothing in the store?")
                for key, values in dump:
                    for blob in [key] + values:
                        for p in (phone, step_phone):
                            self.assertNotIn(p.encode(), blob, "%s: number in clear in %r" %
                                             (what, key))
                        self.assertIsNone(code_re.search(blob),
                                          "%s: code in clear in %r" % (what, key))

            scan("codes pending")
            self.sign_in_code(phone, code, srv=srv)
            t.auth_call(srv, "StepUp", self.A.StepUpRequest(code=step_code), token=who.access)
            scan("after sign-in and step-up")


# --- SignInWithCode and the tokens it returns -------------------------------

class SignInWithCodeTest(AuthTestCase):
    def test_wrong_code_is_code_invalid_with_tries_left(self):
        phone = t.random_phone()
        code = self.code_for(phone)
        wrong = "%06d" % ((int(code) + 1) % 1000000)
        err = self.assertCallFails(lambda: self.sign_in_code(phone, wrong), UNAUTH,
                                   "CODE_INVALID")
        self.assertRegex(err.details(), r"\b4\b", "tries left not in the message")
        # a wrong try does not burn the code
        self.assertTrue(self.sign_in_code(phone, code).access_token)

    def test_five_wrong_tries_burn_the_code(self):
        phone = t.random_phone()
        code = self.code_for(phone)
        wrong = "%06d" % ((int(code) + 1) % 1000000)
        for left in (4, 3, 2, 1):
            err = self.assertCallFails(lambda: self.sign_in_code(phone, wrong), UNAUTH,
                                       "CODE_INVALID")
            self.assertRegex(err.details(), r"\b%d\b" % left)
        self.assertCallFails(lambda: self.sign_in_code(phone, wrong), UNAUTH, "CODE_EXHAUSTED")
        self.assertCallFails(lambda: self.sign_in_code(phone, code), UNAUTH, "CODE_EXHAUSTED")
        # a new code works again
        self.assertTrue(self.sign_in_code(phone, self.code_for(phone)).access_token)

    def test_malformed_code_costs_no_try(self):
        phone = t.random_phone()
        code = self.code_for(phone)
        for bad in ("12345", "1234567", "abcdef", "１２３４５６", ""):
            with self.subTest(code=bad):
                self.assertCallFails(lambda: self.sign_in_code(phone, bad), INVALID,
                                     "CODE_MALFORMED")
        self.assertTrue(self.sign_in_code(phone, code).access_token)

    def test_right_code_creates_the_account_the_first_time_only(self):
        phone = t.random_phone()
        first = self.sign_in_code(phone, self.code_for(phone))
        self.assertTrue(first.account_created)
        self.assertTrue(first.access_token and first.refresh_token and first.session_id)
        self.assertEqual(first.account.masked_phone, phone[:3] + "****" + phone[7:])
        self.assertEqual(first.account.assurance_level, 1)
        self.assertEqual(list(first.account.roles), [self.A.ROLE_CITIZEN])
        self.assertFalse(first.account.has_password)
        second = self.sign_in_code(phone, self.code_for(phone))
        self.assertFalse(second.account_created)
        self.assertEqual(second.account.account_id, first.account.account_id)
        self.assertNotEqual(second.session_id, first.session_id)

    def test_a_code_is_single_use(self):
        phone = t.random_phone()
        code = self.code_for(phone)
        self.sign_in_code(phone, code)
        self.assertCallFails(lambda: self.sign_in_code(phone, code), UNAUTH, "CODE_EXPIRED")

    def test_code_past_its_validity_is_code_expired(self):
        phone = t.random_phone()
        code = self.code_for(phone)
        # move the code's expiry into the past rather than wait 5 minutes
        slot = "{p:%s}:otp:code:1" % t.phone_tag(self.srv, phone)
        self.assertEqual(t.redis_cmd(self.srv.redis_url, "EXISTS", slot), 1)
        t.redis_cmd(self.srv.redis_url, "HSET", slot, "exp", now_ms() - 1)
        self.assertCallFails(lambda: self.sign_in_code(phone, code), UNAUTH, "CODE_EXPIRED")

    def test_code_never_issued_is_code_expired(self):
        self.assertCallFails(lambda: self.sign_in_code(t.random_phone(), "123456"), UNAUTH,
                             "CODE_EXPIRED")

    def test_bad_device_is_refused_before_the_code_is_checked(self):
        phone = t.random_phone()
        code = self.code_for(phone)
        for dev_id in ("short7c", "x" * 65, "has space1", "emoji😀😀😀", "dots.in.id", ""):
            with self.subTest(device_id=dev_id):
                self.assertCallFails(lambda: self.sign_in_code(phone, code,
                                                               self.device(dev_id)),
                                     INVALID, "DEVICE_ID_INVALID")
        for name in ("", "名" * 65, "a\x01b", "line\nbreak"):
            with self.subTest(name=name):
                self.assertCallFails(lambda: self.sign_in_code(phone, code,
                                                               self.device(name=name)),
                                     INVALID, "DEVICE_NAME_INVALID")
        self.assertCallFails(lambda: self.call("SignInWithCode", self.A.SignInWithCodeRequest(
            phone=phone, code=code)), INVALID, "DEVICE_REQUIRED")
        # limits are inclusive, and no refusal cost the code a try
        ok = self.sign_in_code(phone, code, self.device("a" * 64, "名" * 64))
        self.assertTrue(ok.access_token)

    def test_access_token_is_an_es256_at_jwt_with_the_documented_claims(self):
        before = int(time.time())
        who = t.sign_in(self.srv)
        after = int(time.time())
        header, claims, sig = t.jwt_decode(who.access)
        kid, key_path = t.server_key_path(self.srv)
        self.assertEqual(header, {"alg": "ES256", "typ": "at+jwt", "kid": kid})
        self.assertEqual(len(sig), 64, "ES256 signature is raw r||s")
        self.assertTrue(t.es256_verify(key_path, who.access.rsplit(".", 1)[0].encode(), sig),
                        "signature does not verify with the server's key (openssl)")
        for c in ("iss", "aud", "sub", "sid", "jti", "iat", "nbf", "exp", "acr", "roles",
                  "auth_time"):
            self.assertIn(c, claims)
        self.assertEqual(claims["iss"], ISSUER)
        self.assertEqual(claims["aud"], AUDIENCE)
        self.assertEqual(claims["sub"], who.account_id)
        self.assertEqual(claims["sid"], who.sid)
        for c in ("sub", "sid", "jti"):
            self.assertRegex(claims[c], ID_RE)
        for c in ("iat", "nbf", "exp", "auth_time"):
            self.assertIsInstance(claims[c], int, c)
        self.assertTrue(before <= claims["iat"] <= after)
        self.assertLessEqual(claims["iat"], claims["nbf"])
        self.assertLess(claims["nbf"], claims["exp"])
        self.assertLessEqual(claims["exp"] - claims["iat"], 900)
        self.assertTrue(before <= claims["auth_time"] <= claims["iat"])
        self.assertIs(type(claims["acr"]), int)
        self.assertEqual(claims["acr"], 1)
        self.assertEqual(claims["roles"], ["citizen"])
        self.assertEqual(who.resp.access_expires_at_ms, claims["exp"] * 1000)
        # a second token has its own jti
        other = t.sign_in(self.srv, who.phone)
        self.assertNotEqual(t.jwt_decode(other.access)[1]["jti"], claims["jti"])

    def test_refresh_token_is_account_session_and_43_random_characters(self):
        who = t.sign_in(self.srv)
        acct, sid, secret = who.refresh.split(".")
        self.assertEqual(acct, who.account_id)
        self.assertEqual(sid, who.sid)
        self.assertRegex(secret, r"^[A-Za-z0-9_-]{43}$")
        ms = now_ms()
        self.assertGreater(who.resp.refresh_expires_at_ms, ms + 29 * 24 * 3600 * 1000)
        self.assertLessEqual(who.resp.refresh_expires_at_ms, ms + 30 * 24 * 3600 * 1000 + 5000)


# --- GetMe -----------------------------------------------------------------

class GetMeTest(AuthTestCase):
    def test_get_me_with_the_token_is_the_callers_account(self):
        who = t.sign_in(self.srv)
        me = self.get_me(who.access)
        self.assertEqual(me.account_id, who.account_id)
        self.assertEqual(me.masked_phone, who.phone[:3] + "****" + who.phone[7:])
        self.assertEqual(me.assurance_level, 1)

    def test_no_token_is_token_missing(self):
        self.assertCallFails(lambda: self.get_me(None), UNAUTH, "TOKEN_MISSING")

    def test_other_schemes_are_token_malformed(self):
        who = t.sign_in(self.srv)
        for header in ("Basic x", "Bearer", "Bearer ", "Bearer  " + who.access,
                       "Token " + who.access, who.access):
            with self.subTest(header=header[:12]):
                self.assertCallFails(lambda: self.call(
                    "GetMe", self.A.GetMeRequest(), metadata=[("authorization", header)]),
                    UNAUTH, "TOKEN_MALFORMED")

    def test_bearer_scheme_is_case_insensitive(self):
        who = t.sign_in(self.srv)
        me = self.call("GetMe", self.A.GetMeRequest(),
                       metadata=[("authorization", "bearer " + who.access)])
        self.assertEqual(me.account_id, who.account_id)


# --- Refresh ---------------------------------------------------------------

class RefreshTest(AuthTestCase):
    def refresh(self, token):
        return self.call("Refresh", self.A.RefreshRequest(refresh_token=token))

    def test_refresh_rotates_and_keeps_the_session(self):
        who = t.sign_in(self.srv)
        r = self.refresh(who.refresh)
        self.assertNotEqual(r.refresh_token, who.refresh)
        self.assertEqual(r.session_id, who.sid)
        self.assertFalse(r.account_created)
        self.assertEqual(t.jwt_decode(r.access_token)[1]["sid"], who.sid)
        self.assertEqual(t.jwt_decode(r.access_token)[1]["auth_time"],
                         t.jwt_decode(who.access)[1]["auth_time"],
                         "a refresh is no new proof of presence")
        self.assertEqual(self.get_me(r.access_token).account_id, who.account_id)
        # and the new one rotates again
        r2 = self.refresh(r.refresh_token)
        self.assertNotIn(r2.refresh_token, (r.refresh_token, who.refresh))

    def test_reuse_of_a_rotated_token_ends_the_whole_session(self):
        who = t.sign_in(self.srv)
        newer = self.refresh(who.refresh)
        self.assertEqual(self.get_me(newer.access_token).account_id, who.account_id)
        self.assertCallFails(lambda: self.refresh(who.refresh), UNAUTH, "REFRESH_REUSED")
        # every access token of the session fails at once...
        self.assertSessionRevoked(newer.access_token)
        self.assertSessionRevoked(who.access)
        # ...and so does the newest refresh token
        self.assertCallFails(lambda: self.refresh(newer.refresh_token), UNAUTH,
                             "SESSION_REVOKED")
        self.assertCallFails(lambda: self.refresh(who.refresh), UNAUTH)

    def test_reuse_ends_only_that_session(self):
        phone = t.random_phone()
        a = t.sign_in(self.srv, phone)
        b = t.sign_in(self.srv, phone)
        self.refresh(a.refresh)
        self.assertCallFails(lambda: self.refresh(a.refresh), UNAUTH, "REFRESH_REUSED")
        self.assertEqual(self.get_me(b.access).account_id, b.account_id)
        sessions = self.call("ListSessions", self.A.ListSessionsRequest(), token=b.access)
        self.assertEqual([x.session_id for x in sessions.sessions], [b.sid])
        self.refresh(b.refresh)

    def test_garbage_refresh_token_is_refresh_invalid(self):
        who = t.sign_in(self.srv)
        other = t.sign_in(self.srv)
        acct, sid, secret = who.refresh.split(".")
        flipped = secret[:-1] + ("A" if secret[-1] != "A" else "B")
        for bad in ("", "garbage", "a.b.c", "..", who.access, "x" * 300,
                    "%s.%s.%s" % (acct, sid, flipped),
                    "%s.%s.%s" % (acct, "nosuchsession", secret),
                    "%s.%s.%s" % (other.account_id, sid, secret),
                    "%s.%s.%s" % (acct, other.sid, other.refresh.split(".")[2]),
                    "%s.%s.%s." % (acct, sid, secret),
                    "%s.%s.%s" % (acct, sid, secret[:-1] + "!")):
            with self.subTest(token=bad[:30]):
                self.assertCallFails(lambda: self.refresh(bad), UNAUTH, "REFRESH_INVALID")
        # none of these touched the real tokens
        self.refresh(who.refresh)
        self.refresh(other.refresh)


    def rt_key(self, who):
        import hashlib
        return "{u:%s}:rt:%s" % (who.account_id,
                                 hashlib.sha256(who.refresh.encode()).hexdigest())

    def test_refresh_token_idles_out_after_30_days(self):
        who = t.sign_in(self.srv)
        now = time.time() * 1000
        day = 24 * 3600 * 1000
        self.assertAlmostEqual(who.resp.refresh_expires_at_ms, now + 30 * day, delta=60000)
        # 30 days without use: the stored idle expiry has passed
        t.redis_cmd(self.srv.redis_url, "HSET", self.rt_key(who), "idle_exp_ms", int(now) - 1)
        self.assertCallFails(lambda: self.refresh(who.refresh), UNAUTH, "REFRESH_EXPIRED")

    def test_refresh_never_goes_past_the_90_day_absolute_limit(self):
        who = t.sign_in(self.srv)
        now = int(time.time() * 1000)
        # the session is 89 days and 23 h old: a refresh now may not run past day 90
        abs_ms = now + 3600 * 1000
        t.redis_cmd(self.srv.redis_url, "HSET", self.rt_key(who), "abs_exp_ms", abs_ms)
        r = self.refresh(who.refresh)
        self.assertEqual(r.refresh_expires_at_ms, abs_ms)
        # and once day 90 has passed, no refresh works however recently used
        newer = t.SignedIn(who.phone, who.device_id, r)
        t.redis_cmd(self.srv.redis_url, "HSET", self.rt_key(newer), "abs_exp_ms", now - 1)
        self.assertCallFails(lambda: self.refresh(newer.refresh), UNAUTH, "REFRESH_EXPIRED")

    def test_timeout_multiplier_stretches_the_idle_window_up_to_the_absolute_limit(self):
        who = t.sign_in(self.srv)
        day = 24 * 3600 * 1000
        # what AccessibilityService.UpdateSettings stores for a 300 % multiplier
        t.redis_cmd(self.srv.redis_url, "HSET", "{u:%s}:a11y" % who.account_id,
                    "timeout_pct", 300)
        r = self.refresh(who.refresh)
        self.assertAlmostEqual(r.refresh_expires_at_ms, time.time() * 1000 + 90 * day,
                               delta=60000)
        t.redis_cmd(self.srv.redis_url, "HSET", "{u:%s}:a11y" % who.account_id,
                    "timeout_pct", 150)
        r2 = self.refresh(r.refresh_token)
        self.assertAlmostEqual(r2.refresh_expires_at_ms, time.time() * 1000 + 45 * day,
                               delta=60000)


# --- sessions --------------------------------------------------------------

class SessionTest(AuthTestCase):
    def list_sessions(self, token):
        return self.call("ListSessions", self.A.ListSessionsRequest(), token=token).sessions

    def sign_out(self, token, sid=""):
        return self.call("SignOut", self.A.SignOutRequest(session_id=sid), token=token)

    def test_signing_in_again_on_the_same_device_replaces_its_session(self):
        phone = t.random_phone()
        dev = t.random_device_id()
        old = t.sign_in(self.srv, phone, dev)
        self.get_me(old.access)
        new = t.sign_in(self.srv, phone, dev)
        self.assertNotEqual(new.sid, old.sid)
        self.assertSessionRevoked(old.access)
        self.assertCallFails(lambda: self.call("Refresh", self.A.RefreshRequest(
            refresh_token=old.refresh)), UNAUTH, "SESSION_REVOKED")
        self.assertEqual([s.session_id for s in self.list_sessions(new.access)], [new.sid])

    def test_the_21st_device_ends_the_oldest_session(self):
        phone = t.random_phone()
        first = t.sign_in(self.srv, phone)
        rest = [t.sign_in(self.srv, phone) for _ in range(19)]
        self.get_me(first.access)
        self.assertEqual(len(self.list_sessions(first.access)), 20)
        newest = t.sign_in(self.srv, phone)
        self.assertSessionRevoked(first.access)
        listed = {s.session_id for s in self.list_sessions(newest.access)}
        self.assertEqual(listed, {w.sid for w in rest} | {newest.sid})

    def test_two_devices_are_listed_with_the_current_flag(self):
        phone = t.random_phone()
        a = t.sign_in(self.srv, phone, device_name="华为 Mate 60")
        b = t.sign_in(self.srv, phone, device_name="iPhone 15")
        for me, other in ((a, b), (b, a)):
            sessions = {s.session_id: s for s in self.list_sessions(me.access)}
            self.assertEqual(set(sessions), {a.sid, b.sid})
            self.assertTrue(sessions[me.sid].current)
            self.assertFalse(sessions[other.sid].current)
        sessions = {s.session_id: s for s in self.list_sessions(a.access)}
        self.assertEqual(sessions[a.sid].device_id, a.device_id)
        self.assertEqual(sessions[a.sid].device_name, "华为 Mate 60")
        self.assertEqual(sessions[b.sid].device_name, "iPhone 15")
        self.assertGreater(sessions[a.sid].created_at_ms, 0)
        self.assertGreater(sessions[a.sid].last_used_at_ms, 0)

    def test_sign_out_of_another_own_session_ends_it_at_once(self):
        phone = t.random_phone()
        a = t.sign_in(self.srv, phone)
        b = t.sign_in(self.srv, phone)
        self.get_me(b.access)  # cached as valid
        r = self.sign_out(a.access, b.sid)
        self.assertEqual(r.ended, 1)
        self.assertSessionRevoked(b.access)
        self.assertCallFails(lambda: self.call("Refresh", self.A.RefreshRequest(
            refresh_token=b.refresh)), UNAUTH, "SESSION_REVOKED")
        self.get_me(a.access)
        self.assertEqual([s.session_id for s in self.list_sessions(a.access)], [a.sid])
        # sign-out is idempotent
        self.assertEqual(self.sign_out(a.access, b.sid).ended, 0)

    def test_sign_out_without_id_ends_the_callers_own_session(self):
        phone = t.random_phone()
        a = t.sign_in(self.srv, phone)
        b = t.sign_in(self.srv, phone)
        self.assertEqual(self.sign_out(a.access).ended, 1)
        self.assertSessionRevoked(a.access)
        self.get_me(b.access)

    def test_sign_out_others_ends_every_session_but_the_callers(self):
        phone = t.random_phone()
        a, b, c = (t.sign_in(self.srv, phone) for _ in range(3))
        r = self.call("SignOutOthers", self.A.SignOutOthersRequest(), token=b.access)
        self.assertEqual(r.ended, 2)
        self.assertSessionRevoked(a.access)
        self.assertSessionRevoked(c.access)
        self.get_me(b.access)
        self.assertEqual([s.session_id for s in self.list_sessions(b.access)], [b.sid])

    def test_sign_out_of_another_accounts_session_is_not_found(self):
        me = t.sign_in(self.srv)
        victim = t.sign_in(self.srv)
        self.assertCallFails(lambda: self.sign_out(me.access, victim.sid), NOT_FOUND,
                             "SESSION_NOT_FOUND")
        self.assertCallFails(lambda: self.sign_out(me.access, "nosuchsessionid"), NOT_FOUND,
                             "SESSION_NOT_FOUND")
        self.assertCallFails(lambda: self.sign_out(me.access, "not a session id!"), INVALID,
                             "SESSION_ID_INVALID")
        self.get_me(victim.access)
        self.get_me(me.access)

    def test_sign_out_is_effective_at_once_on_a_second_server(self):
        # two instances of one deployment: same Redis, same keys
        data = tempfile.mkdtemp(prefix="fxb-e2e-shared.")
        try:
            env = dict(t.AUTH_ENV, FXB_DATA_DIR=data)
            with t.Server(extra_env=env) as s1, t.Server(extra_env=env) as s2:
                phone = t.random_phone()
                a = t.sign_in(s1, phone)
                b = t.sign_in(s1, phone)
                # the second server accepts the tokens (and caches them)
                for who in (a, b):
                    self.assertEqual(self.get_me(who.access, s2).account_id, who.account_id)
                self.probe("ProbeSignedIn", b.access, srv=s2)
                # ends b on s1: s2 learns it over pub/sub
                t.auth_call(s1, "SignOut", self.A.SignOutRequest(session_id=b.sid),
                            token=a.access)
                revoked = t.wait_until(lambda: self._fails_revoked(s2, b.access), timeout=2)
                self.assertTrue(revoked, "the second server still accepts a signed-out "
                                "session's token after 2 s")
                self.assertSessionRevoked(b.access, s1)
                # a sign-out on s2 is seen by s1 the same way
                self.get_me(a.access, s1)
                t.auth_call(s2, "SignOut", self.A.SignOutRequest(), token=a.access)
                self.assertTrue(t.wait_until(lambda: self._fails_revoked(s1, a.access),
                                             timeout=2))
        finally:
            shutil.rmtree(data, ignore_errors=True)

    def _fails_revoked(self, srv, token):
        try:
            self.get_me(token, srv)
            return False
        except grpc.RpcError as e:
            self.assertEqual(t.error_reason(e), (UNAUTH, "SESSION_REVOKED"))
            return True


# --- passwords -------------------------------------------------------------

class PasswordTest(AuthTestCase):
    def set_password(self, token, pw):
        return self.call("SetPassword", self.A.SetPasswordRequest(new_password=pw), token=token)

    def pw_sign_in(self, phone, pw, device=None):
        return self.call("SignInWithPassword", self.A.SignInWithPasswordRequest(
            phone=phone, password=pw, device=device or self.device()))

    def test_set_password_right_after_sign_in_then_sign_in_with_it(self):
        who = t.sign_in(self.srv)
        self.set_password(who.access, "清风徐来 water")
        self.assertTrue(self.get_me(who.access).has_password)
        r = self.pw_sign_in(who.phone, "清风徐来 water")
        self.assertFalse(r.account_created)
        self.assertEqual(r.account.account_id, who.account_id)
        self.assertTrue(r.account.has_password)
        self.assertNotEqual(r.session_id, who.sid)
        self.assertEqual(self.get_me(r.access_token).account_id, who.account_id)
        # "+86" form of the number works too
        self.pw_sign_in("+86" + who.phone, "清风徐来 water")

    def test_weak_passwords_are_refused(self):
        who = t.sign_in(self.srv)
        for pw in ("short1a",                 # 7 bytes
                   "12345678901",             # only digits
                   "１２３４５６７８９",       # only full-width digits
                   who.phone,                 # the phone number
                   "+86" + who.phone,
                   "x" * 129):                # too long
            with self.subTest(pw=pw[:16]):
                self.assertCallFails(lambda: self.set_password(who.access, pw), INVALID,
                                     "PASSWORD_WEAK")
        self.assertFalse(self.get_me(who.access).has_password)
        self.set_password(who.access, "abcdefgh")  # exactly 8 bytes, not all digits

    def test_wrong_password_and_unknown_phone_are_the_same_credentials_invalid(self):
        who = t.sign_in(self.srv)
        self.set_password(who.access, "correct horse")
        e1 = self.assertCallFails(lambda: self.pw_sign_in(who.phone, "wrong horse"), UNAUTH,
                                  "CREDENTIALS_INVALID")
        e2 = self.assertCallFails(lambda: self.pw_sign_in(t.random_phone(), "wrong horse"),
                                  UNAUTH, "CREDENTIALS_INVALID")
        nopw = t.sign_in(self.srv)  # an account without a password
        e3 = self.assertCallFails(lambda: self.pw_sign_in(nopw.phone, "wrong horse"), UNAUTH,
                                  "CREDENTIALS_INVALID")
        # one shape for all: nothing tells whether the number has an account
        shape = lambda e: re.sub(r"\d+", "N", e.details())  # noqa: E731
        self.assertEqual(shape(e1), shape(e2))
        self.assertEqual(shape(e1), shape(e3))

    def test_five_wrong_passwords_lock_the_account(self):
        who = t.sign_in(self.srv)
        self.set_password(who.access, "correct horse")
        for _ in range(4):
            self.assertCallFails(lambda: self.pw_sign_in(who.phone, "wrong horse"), UNAUTH,
                                 "CREDENTIALS_INVALID")
        err = self.assertCallFails(lambda: self.pw_sign_in(who.phone, "wrong horse"), EXHAUSTED,
                                   "PASSWORD_LOCKED")
        self.assertRetryAfter(err, 60, 15 * 60)
        # now even the right password is refused until the lock ends
        err = self.assertCallFails(lambda: self.pw_sign_in(who.phone, "correct horse"),
                                   EXHAUSTED, "PASSWORD_LOCKED")
        self.assertRetryAfter(err, 60, 15 * 60)
        # SMS sign-in still works
        self.assertTrue(t.sign_in(self.srv, who.phone).access)

    def test_a_success_clears_the_failure_count(self):
        who = t.sign_in(self.srv)
        self.set_password(who.access, "correct horse")
        for _ in range(4):
            self.assertCallFails(lambda: self.pw_sign_in(who.phone, "wrong horse"), UNAUTH,
                                 "CREDENTIALS_INVALID")
        self.pw_sign_in(who.phone, "correct horse")
        for _ in range(4):
            self.assertCallFails(lambda: self.pw_sign_in(who.phone, "wrong horse"), UNAUTH,
                                 "CREDENTIALS_INVALID")
        self.pw_sign_in(who.phone, "correct horse")

    def test_the_lock_also_holds_for_step_up_with_the_password(self):
        who = t.sign_in(self.srv)
        self.set_password(who.access, "correct horse")
        for _ in range(5):
            self.assertRaises(grpc.RpcError, lambda: self.pw_sign_in(who.phone, "wrong horse"))
        self.assertCallFails(lambda: self.call("StepUp", self.A.StepUpRequest(
            password="correct horse"), token=who.access), EXHAUSTED, "PASSWORD_LOCKED")

    def test_five_tries_on_an_unknown_phone_lock_it_the_same_way(self):
        phone = t.random_phone()
        for _ in range(4):
            self.assertCallFails(lambda: self.pw_sign_in(phone, "whatever1"), UNAUTH,
                                 "CREDENTIALS_INVALID")
        self.assertCallFails(lambda: self.pw_sign_in(phone, "whatever1"), EXHAUSTED,
                             "PASSWORD_LOCKED")

    def test_bad_phone_and_device_are_invalid_argument(self):
        self.assertCallFails(lambda: self.pw_sign_in("12345", "whatever1"), INVALID,
                             "PHONE_INVALID")
        self.assertCallFails(lambda: self.pw_sign_in(t.random_phone(), "whatever1",
                                                     self.device("short")),
                             INVALID, "DEVICE_ID_INVALID")

    def test_set_password_needs_a_recent_proof_of_presence(self):
        who = t.sign_in(self.srv)
        claims = t.jwt_decode(who.access)[1]
        now = int(time.time())
        stale = t.forge_token(self.srv, base=claims, auth_time=now - 3600, iat=now, nbf=now,
                              exp=now + 600)
        self.assertCallFails(lambda: self.set_password(stale, "correct horse"), UNAUTH,
                             "STEP_UP_REQUIRED")
        # a step-up with a code gives a token that may set it
        code = self.code_for(who.phone, self.A.CODE_PURPOSE_STEP_UP)
        r = self.call("StepUp", self.A.StepUpRequest(code=code), token=stale)
        self.set_password(r.access_token, "correct horse")


# --- step-up ---------------------------------------------------------------

class StepUpTest(AuthTestCase):
    def step_up(self, token, **proof):
        return self.call("StepUp", self.A.StepUpRequest(**proof), token=token)

    def assertNewerProof(self, who, r):
        old = t.jwt_decode(who.access)[1]
        new = t.jwt_decode(r.access_token)[1]
        self.assertGreater(new["auth_time"], old["auth_time"])
        self.assertEqual(new["sid"], old["sid"])
        self.assertEqual(r.session_id, who.sid)
        self.assertEqual(new["sub"], old["sub"])
        self.assertNotEqual(new["jti"], old["jti"])
        self.assertEqual(self.probe("ProbeStepUp", r.access_token).auth_time_s,
                         new["auth_time"])

    def test_step_up_with_a_step_up_code_gives_a_newer_auth_time(self):
        who = t.sign_in(self.srv)
        time.sleep(1.1)  # auth_time has whole seconds
        code = self.code_for(who.phone, self.A.CODE_PURPOSE_STEP_UP)
        self.assertNewerProof(who, self.step_up(who.access, code=code))
        # single use
        self.assertCallFails(lambda: self.step_up(who.access, code=code), UNAUTH, "CODE_EXPIRED")

    def test_refresh_after_step_up_keeps_the_newer_auth_time(self):
        who = t.sign_in(self.srv)
        time.sleep(1.1)
        code = self.code_for(who.phone, self.A.CODE_PURPOSE_STEP_UP)
        stepped = t.jwt_decode(self.step_up(who.access, code=code).access_token)[1]
        r = self.call("Refresh", self.A.RefreshRequest(refresh_token=who.refresh))
        self.assertEqual(t.jwt_decode(r.access_token)[1]["auth_time"], stepped["auth_time"])

    def test_step_up_with_a_password_needs_one_set(self):
        who = t.sign_in(self.srv)
        self.assertCallFails(lambda: self.step_up(who.access, password="anything at all"),
                             UNAUTH, "CREDENTIALS_INVALID")

    def test_step_up_with_the_password_gives_a_newer_auth_time(self):
        who = t.sign_in(self.srv)
        self.call("SetPassword", self.A.SetPasswordRequest(new_password="correct horse"),
                  token=who.access)
        time.sleep(1.1)
        self.assertNewerProof(who, self.step_up(who.access, password="correct horse"))
        self.assertCallFails(lambda: self.step_up(who.access, password="wrong horse"), UNAUTH,
                             "CREDENTIALS_INVALID")

    def test_a_sign_in_code_does_not_work_for_step_up(self):
        who = t.sign_in(self.srv)
        code = self.code_for(who.phone)  # purpose SIGN_IN
        self.assertCallFails(lambda: self.step_up(who.access, code=code), UNAUTH,
                             "CODE_EXPIRED")
        # and a step-up code does not sign in
        step = self.code_for(who.phone, self.A.CODE_PURPOSE_STEP_UP)
        self.assertCallFails(lambda: self.sign_in_code(who.phone, step), UNAUTH,
                             "CODE_INVALID")

    def test_step_up_without_proof_is_invalid_argument(self):
        who = t.sign_in(self.srv)
        self.assertCallFails(lambda: self.step_up(who.access), INVALID, "PROOF_REQUIRED")

    def test_step_up_needs_a_signed_in_caller(self):
        self.assertCallFails(lambda: self.step_up(None, code="123456"), UNAUTH, "TOKEN_MISSING")


# --- staff -----------------------------------------------------------------

class StaffTest(AuthTestCase):
    def test_officer_made_by_fxb_admin_signs_in_with_role_and_department(self):
        phone = t.random_phone()
        out = t.make_staff(self.srv, phone, "officer", "dept-x").stdout
        self.assertNotIn(phone, out, "fxb-admin printed the number in clear")
        who = t.sign_in(self.srv, phone)
        self.assertFalse(who.resp.account_created, "the account was made by fxb-admin")
        claims = t.jwt_decode(who.access)[1]
        self.assertEqual(sorted(claims["roles"]), ["citizen", "officer"])
        self.assertEqual(claims["dept"], "dept-x")
        me = self.get_me(who.access)
        self.assertEqual(sorted(me.roles), sorted([self.A.ROLE_CITIZEN, self.A.ROLE_OFFICER]))
        self.assertEqual(me.department, "dept-x")
        p = self.probe("ProbeOfficer", who.access, "dept-x")
        self.assertEqual(p.department, "dept-x")
        self.assertCallFails(lambda: self.probe("ProbeOfficer", who.access, "dept-y"), DENIED,
                             "DEPARTMENT_MISMATCH")

    def test_staff_role_of_an_existing_citizen_shows_after_refresh(self):
        who = t.sign_in(self.srv)
        t.make_staff(self.srv, who.phone, "admin")
        r = self.call("Refresh", self.A.RefreshRequest(refresh_token=who.refresh))
        self.assertEqual(sorted(t.jwt_decode(r.access_token)[1]["roles"]), ["admin", "citizen"])
        self.probe("ProbeAdmin", r.access_token)
        self.assertCallFails(lambda: self.probe("ProbeAdmin", who.access), DENIED,
                             "ROLE_REQUIRED")

    def test_staff_command_refuses_bad_usage(self):
        env = {"FXB_DATA_DIR": self.srv.env["FXB_DATA_DIR"]}
        r = t.run_admin(["staff", "--phone", t.random_phone(), "--role", "officer"],
                        redis_url=self.srv.redis_url, env=env)
        self.assertNotEqual(r.returncode, 0, "an officer needs a department")
        r = t.run_admin(["staff", "--phone", t.random_phone(), "--role", "officer", "--dept",
                         "bad dept!"], redis_url=self.srv.redis_url, env=env)
        self.assertNotEqual(r.returncode, 0, "department codes are [A-Za-z0-9_-]")
        for args in (["staff", "--phone", t.random_phone(), "--role", "king"],
                     ["staff", "--role", "officer"],
                     ["staff", "--phone", "12345", "--role", "officer"]):
            with self.subTest(args=args):
                r = t.run_admin(args, redis_url=self.srv.redis_url, env=env)
                self.assertEqual(r.returncode, 2, r.stderr)


if __name__ == "__main__":
    t.main()
