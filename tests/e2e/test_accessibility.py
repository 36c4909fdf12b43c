"""fxb.v1.AccessibilityService end to end (regulation art. 9: smart voice,
large-font version; MIIT 2021 elderly-friendly app spec; WCAG 2.2.1 timing
adjustable): settings per account, synced across devices and versioned; the
timeout multiplier stretching what the server times (code validity, session
idle time); the trusted relative who receives the account's sign-in codes.

Accounts are made the way users make them: SendCode, the code read from the
development SMS sink (the Redis stream fxb:dev:sms), SignInWithCode. Every
test uses fresh random numbers, so tests do not see each other's state."""
import hashlib
import hmac
import os
import random
import re
import time

import grpc

import fxbtest as t

SVC = "/fxb.v1.AccessibilityService/"
AUTH = "/fxb.v1.AuthService/"
MIN_MS = 60 * 1000
DAY_MS = 24 * 3600 * 1000
SHANGHAI_MS = 8 * 3600 * 1000

_rng = random.SystemRandom()


def a11y_pb():
    return t.pb("fxb/v1/accessibility")


def auth_pb():
    return t.pb("fxb/v1/auth")


def now_ms():
    return int(time.time() * 1000)


def random_phone():
    return "139%08d" % _rng.randrange(10 ** 8)


def masked(phone):
    return phone[:3] + "****" + phone[-4:]


# --- Redis, through the harness's RESP client, with replies as text ---------

def _text(v):
    if isinstance(v, bytes):
        return v.decode("utf-8")
    if isinstance(v, list):
        return [_text(x) for x in v]
    return v


class Resp:
    def __init__(self, url):
        self.url = url

    def close(self):
        pass

    def call(self, *args):
        return _text(t.redis_cmd(self.url, *[a if isinstance(a, bytes) else str(a)
                                              for a in args]))


class AccessibilityTest(t.TestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        # many sign-ins from 127.0.0.1: lift the per-address daily code cap
        cls.srv = t.Server(extra_env={"FXB_OTP_DAILY_IP": "10000"}).__enter__()
        cls.redis = Resp(cls.srv.redis_url)
        with open(os.path.join(cls.srv.env["FXB_DATA_DIR"], "keys", "server-secret"), "rb") as f:
            cls.secret = f.read()

    @classmethod
    def tearDownClass(cls):
        cls.redis.close()
        cls.srv.__exit__(None, None, None)

    # --- calls ---------------------------------------------------------------

    def rpc(self, method, req, resp_cls, token=None, **kw):
        md = [("authorization", "Bearer " + token)] if token else []
        fn = self.srv.unary(SVC + method, type(req), resp_cls)
        return fn(req, metadata=md, timeout=10, **kw)

    def get(self, token):
        a = a11y_pb()
        return self.rpc("GetSettings", a.GetSettingsRequest(), a.AccessibilitySettings, token)

    def update(self, token, read_version, **fields):
        a = a11y_pb()
        req = a.UpdateSettingsRequest(version=read_version,
                                      settings=a.AccessibilitySettings(**fields))
        return self.rpc("UpdateSettings", req, a.AccessibilitySettings, token)

    def start_relative(self, token, phone):
        a = a11y_pb()
        return self.rpc("StartTrustedRelative", a.StartTrustedRelativeRequest(relative_phone=phone),
                        a.StartTrustedRelativeResponse, token)

    def confirm_relative(self, token, code):
        a = a11y_pb()
        return self.rpc("ConfirmTrustedRelative", a.ConfirmTrustedRelativeRequest(code=code),
                        a.AccessibilitySettings, token)

    def remove_relative(self, token):
        a = a11y_pb()
        return self.rpc("RemoveTrustedRelative", a.RemoveTrustedRelativeRequest(),
                        a.AccessibilitySettings, token)

    def auth(self, method, req, resp_cls, token=None):
        md = [("authorization", "Bearer " + token)] if token else []
        return self.srv.unary(AUTH + method, type(req), resp_cls)(req, metadata=md, timeout=10)

    def send_code(self, phone, purpose=None):
        p = auth_pb()
        req = p.SendCodeRequest(phone=phone)
        if purpose is not None:
            req.purpose = purpose
        return self.auth("SendCode", req, p.SendCodeResponse)

    # --- the development SMS sink ------------------------------------------

    def sms_to(self, phone, since_ms):
        """Texts the dev sink holds for phone, sent at since_ms or later,
        newest first."""
        out = []
        for _id, fields in self.redis.call("XREVRANGE", "fxb:dev:sms", "+", "-", "COUNT", "500"):
            f = dict(zip(fields[::2], fields[1::2]))
            if f.get("phone") == phone and int(f.get("at_ms", "0")) >= since_ms:
                out.append(f["text"])
        return out

    def code_sent_to(self, phone, since_ms):
        texts = t.wait_until(lambda: self.sms_to(phone, since_ms), timeout=5)
        self.assertTrue(texts, "no SMS reached %s" % masked(phone))
        m = re.search(r"验证码(\d{6})", texts[0])
        self.assertIsNotNone(m, "no code in %r" % texts[0])
        return m.group(1)

    def allow_resend(self, phone):
        """Ends the 60 s resend pause of phone now (the test's stand-in for
        waiting): deletes {p:<tag>}:otp:last, tag = the first 16 hex digits of
        HMAC-SHA256(server secret, "fxb/phone" 0x00 phone), as auth/phone.c
        computes it. Fails loudly if that key is not where it should be."""
        tag = hmac.new(self.secret, b"fxb/phone\x00" + phone.encode(),
                       hashlib.sha256).hexdigest()[:16]
        key = "{p:%s}:otp:last" % tag
        self.assertEqual(self.redis.call("DEL", key), 1,
                         "resend marker %s missing: has the phone tag changed?" % key)

    # --- accounts --------------------------------------------------------------

    def sign_in(self, phone, device="a11y-device-1", code_to=None):
        """Signs phone in on device; code_to is where the code arrives (a
        trusted relative). Returns (TokenResponse, SendCodeResponse)."""
        p = auth_pb()
        t0 = now_ms()
        sent = self.send_code(phone)
        code = self.code_sent_to(code_to or phone, t0)
        tok = self.auth("SignInWithCode",
                        p.SignInWithCodeRequest(phone=phone, code=code,
                                                device=p.Device(device_id=device,
                                                                name="测试手机")),
                        p.TokenResponse)
        return tok, sent

    def new_account(self):
        phone = random_phone()
        tok, _ = self.sign_in(phone)
        return phone, tok

    def a11y_hash(self, account_id):
        flat = self.redis.call("HGETALL", "{u:%s}:a11y" % account_id)
        return dict(zip(flat[::2], flat[1::2]))

    def assertFieldError(self, fn, reason, field):
        err = self.assertCallFails(fn, grpc.StatusCode.INVALID_ARGUMENT, reason)
        self.assertIn(field, err.details())
        return err

    # --- tests: access ------------------------------------------------------

    def test_every_method_needs_a_signed_in_caller(self):
        a = a11y_pb()
        calls = [("GetSettings", a.GetSettingsRequest(), a.AccessibilitySettings),
                 ("UpdateSettings", a.UpdateSettingsRequest(settings=a.AccessibilitySettings()),
                  a.AccessibilitySettings),
                 ("StartTrustedRelative", a.StartTrustedRelativeRequest(
                     relative_phone=random_phone()), a.StartTrustedRelativeResponse),
                 ("ConfirmTrustedRelative", a.ConfirmTrustedRelativeRequest(code="123456"),
                  a.AccessibilitySettings),
                 ("RemoveTrustedRelative", a.RemoveTrustedRelativeRequest(),
                  a.AccessibilitySettings)]
        for method, req, resp_cls in calls:
            with self.subTest(method=method):
                self.assertCallFails(lambda: self.rpc(method, req, resp_cls),
                                     grpc.StatusCode.UNAUTHENTICATED)
                self.assertCallFails(lambda: self.rpc(method, req, resp_cls, token="garbage"),
                                     grpc.StatusCode.UNAUTHENTICATED)

    # --- tests: settings ----------------------------------------------------

    def test_a_new_account_reads_the_defaults_at_version_0(self):
        _, tok = self.new_account()
        s = self.get(tok.access_token)
        self.assertEqual(s.version, 0)
        self.assertFalse(s.elder_mode)
        self.assertEqual(s.font_scale_percent, 100)
        self.assertEqual((s.body_text_dp, s.largest_text_dp), (16, 24))
        self.assertFalse(s.high_contrast or s.reduced_motion or s.screen_reader_hints or
                         s.voice_broadcast)
        self.assertEqual(s.speech_rate_percent, 100)
        self.assertEqual(s.timeout_multiplier_percent, 100)
        self.assertEqual(s.language, "zh-CN")
        self.assertEqual(s.trusted_relative_masked_phone, "")
        self.assertFalse(s.elder_mode_suggested)
        self.assertEqual(s.updated_at_ms, 0)

    def test_update_stores_every_field_and_bumps_the_version(self):
        _, tok = self.new_account()
        before = now_ms()
        s = self.update(tok.access_token, 0, font_scale_percent=150, high_contrast=True,
                        reduced_motion=True, screen_reader_hints=True, voice_broadcast=True,
                        speech_rate_percent=80, timeout_multiplier_percent=200, language="zh-CN")
        self.assertEqual(s.version, 1)
        self.assertEqual(s.font_scale_percent, 150)
        self.assertEqual((s.body_text_dp, s.largest_text_dp), (24, 36))
        self.assertTrue(s.high_contrast and s.reduced_motion and s.screen_reader_hints and
                        s.voice_broadcast)
        self.assertEqual(s.speech_rate_percent, 80)
        self.assertEqual(s.timeout_multiplier_percent, 200)
        self.assertGreaterEqual(s.updated_at_ms, before)
        self.assertLessEqual(s.updated_at_ms, now_ms())
        self.assertEqual(self.get(tok.access_token), s)
        # the auth service reads this field name with this meaning
        self.assertEqual(self.a11y_hash(tok.account.account_id)["timeout_pct"], "200")
        s2 = self.update(tok.access_token, 1, font_scale_percent=110)
        self.assertEqual(s2.version, 2)
        self.assertEqual(s2.font_scale_percent, 110)
        self.assertFalse(s2.high_contrast)  # an update replaces every chosen setting
        self.assertEqual(s2.timeout_multiplier_percent, 100)

    def test_a_stale_version_is_aborted_and_changes_nothing(self):
        _, tok = self.new_account()
        self.update(tok.access_token, 0, font_scale_percent=120)
        self.update(tok.access_token, 1, font_scale_percent=130)
        err = self.assertCallFails(lambda: self.update(tok.access_token, 1, font_scale_percent=200),
                                   grpc.StatusCode.ABORTED, "VERSION_CONFLICT")
        self.assertIn("read them again", err.details())
        _, loc = t.decode_status_details(err)
        self.assertIn("刷新", loc.message)
        self.assertCallFails(lambda: self.update(tok.access_token, 0, font_scale_percent=200),
                             grpc.StatusCode.ABORTED, "VERSION_CONFLICT")
        self.assertCallFails(lambda: self.update(tok.access_token, 99, font_scale_percent=200),
                             grpc.StatusCode.ABORTED, "VERSION_CONFLICT")
        s = self.get(tok.access_token)
        self.assertEqual((s.version, s.font_scale_percent), (2, 130))

    def test_a_retried_update_answers_like_the_first_time(self):
        _, tok = self.new_account()
        first = self.update(tok.access_token, 0, voice_broadcast=True, speech_rate_percent=70)
        again = self.update(tok.access_token, 0, voice_broadcast=True, speech_rate_percent=70)
        self.assertEqual(again, first)
        self.assertEqual(self.get(tok.access_token).version, 1)

    def test_each_out_of_range_field_is_invalid_argument_naming_it(self):
        _, tok = self.new_account()
        cases = [({"font_scale_percent": 99}, "FONT_SCALE_OUT_OF_RANGE", "font_scale_percent"),
                 ({"font_scale_percent": 201}, "FONT_SCALE_OUT_OF_RANGE", "font_scale_percent"),
                 ({"speech_rate_percent": 49}, "SPEECH_RATE_OUT_OF_RANGE", "speech_rate_percent"),
                 ({"speech_rate_percent": 201}, "SPEECH_RATE_OUT_OF_RANGE",
                  "speech_rate_percent"),
                 ({"timeout_multiplier_percent": 99}, "TIMEOUT_MULTIPLIER_OUT_OF_RANGE",
                  "timeout_multiplier_percent"),
                 ({"timeout_multiplier_percent": 301}, "TIMEOUT_MULTIPLIER_OUT_OF_RANGE",
                  "timeout_multiplier_percent"),
                 ({"language": "en-US"}, "LANGUAGE_UNSUPPORTED", "language"),
                 ({"language": "x" * 500}, "LANGUAGE_UNSUPPORTED", "language")]
        for fields, reason, name in cases:
            with self.subTest(fields=str(fields)[:60]):
                self.assertFieldError(lambda: self.update(tok.access_token, 0, **fields), reason,
                                      "settings." + name)
        self.assertEqual(self.get(tok.access_token).version, 0)
        self.assertEqual(self.a11y_hash(tok.account.account_id), {})

    def test_missing_settings_is_invalid_argument(self):
        _, tok = self.new_account()
        a = a11y_pb()
        self.assertCallFails(lambda: self.rpc("UpdateSettings", a.UpdateSettingsRequest(version=0),
                                              a.AccessibilitySettings, tok.access_token),
                             grpc.StatusCode.INVALID_ARGUMENT, "SETTINGS_REQUIRED")

    def test_zero_percentages_mean_defaults_and_read_only_fields_are_ignored(self):
        phone, tok = self.new_account()
        s = self.update(tok.access_token, 0, version=77, body_text_dp=99, largest_text_dp=99,
                        trusted_relative_masked_phone=masked(phone), elder_mode_suggested=True,
                        updated_at_ms=5)
        self.assertEqual(s.version, 1)
        self.assertEqual((s.font_scale_percent, s.speech_rate_percent,
                          s.timeout_multiplier_percent), (100, 100, 100))
        self.assertEqual((s.body_text_dp, s.largest_text_dp), (16, 24))
        self.assertEqual(s.trusted_relative_masked_phone, "")
        self.assertFalse(s.elder_mode_suggested)
        self.assertGreater(s.updated_at_ms, 5)
        self.assertEqual(s.language, "zh-CN")

    def test_elder_mode_raises_the_font_scale_to_the_125_percent_preset(self):
        _, tok = self.new_account()
        s = self.update(tok.access_token, 0, elder_mode=True)
        self.assertTrue(s.elder_mode)
        self.assertEqual(s.font_scale_percent, 125)
        self.assertGreaterEqual(s.body_text_dp, 18)
        self.assertGreaterEqual(s.largest_text_dp, 30)
        self.assertEqual((s.body_text_dp, s.largest_text_dp), (20, 30))
        s = self.update(tok.access_token, 1, elder_mode=True, font_scale_percent=160)
        self.assertEqual((s.font_scale_percent, s.body_text_dp, s.largest_text_dp),
                         (160, 26, 38))

    def test_elder_mode_is_suggested_from_a_verified_age_of_60(self):
        _, tok = self.new_account()
        key = "{u:%s}:identity" % tok.account.account_id
        # today's date in Asia/Shanghai, whatever the machine's zone
        today = time.gmtime((now_ms() + SHANGHAI_MS) // 1000)
        # a 29 February has no anniversary in most years: test from 1 March then
        if (today.tm_mon, today.tm_mday) == (2, 29):
            self.skipTest("29 February")
        born = lambda years_ago: "%04d%02d%02d" % (today.tm_year - years_ago, today.tm_mon,
                                                   today.tm_mday)
        self.assertFalse(self.get(tok.access_token).elder_mode_suggested)  # unknown age
        self.redis.call("HSET", key, "birth_date", born(60))  # 60 today
        self.assertTrue(self.get(tok.access_token).elder_mode_suggested)
        self.redis.call("HSET", key, "birth_date", born(75))
        self.assertTrue(self.get(tok.access_token).elder_mode_suggested)
        s = self.update(tok.access_token, 0, elder_mode=True)
        self.assertFalse(s.elder_mode_suggested)  # already chosen
        self.update(tok.access_token, 1, elder_mode=False)
        self.redis.call("HSET", key, "birth_date", born(59))
        self.assertFalse(self.get(tok.access_token).elder_mode_suggested)
        for bad in ("19500231", "1950-1-1", "garbage", ""):
            self.redis.call("HSET", key, "birth_date", bad)
            self.assertFalse(self.get(tok.access_token).elder_mode_suggested, bad)

    def test_two_devices_of_one_account_see_the_same_settings(self):
        phone = random_phone()
        a, _ = self.sign_in(phone, device="a11y-phone-A")
        self.allow_resend(phone)
        b, _ = self.sign_in(phone, device="a11y-tablet-B")
        self.assertNotEqual(a.session_id, b.session_id)
        self.assertEqual(a.account.account_id, b.account.account_id)
        written = self.update(a.access_token, 0, elder_mode=True, voice_broadcast=True)
        self.assertEqual(self.get(b.access_token), written)
        # B edits from the version it read; A, still on version 0, must re-read
        written_b = self.update(b.access_token, written.version, elder_mode=True,
                                high_contrast=True)
        self.assertCallFails(lambda: self.update(a.access_token, 0, font_scale_percent=200),
                             grpc.StatusCode.ABORTED, "VERSION_CONFLICT")
        fresh = self.get(a.access_token)
        self.assertEqual(fresh, written_b)
        self.assertEqual(self.update(a.access_token, fresh.version,
                                     font_scale_percent=200).version, 3)

    # --- tests: the timeout multiplier reaches the server's clocks ------------

    def test_the_timeout_multiplier_stretches_code_validity_and_session_idle_time(self):
        phone = random_phone()
        t0 = now_ms()
        first, sent = self.sign_in(phone, device="a11y-slow-1")
        t1 = now_ms()
        self.assertAlmostEqual(sent.expires_at_ms - t0, 5 * MIN_MS, delta=t1 - t0 + 2000)
        base_idle = first.refresh_expires_at_ms - t0
        self.update(first.access_token, 0, timeout_multiplier_percent=200)
        self.allow_resend(phone)
        t2 = now_ms()
        sent = self.send_code(phone)
        self.assertAlmostEqual(sent.expires_at_ms - t2, 10 * MIN_MS, delta=now_ms() - t2 + 2000)
        self.update(first.access_token, 1, timeout_multiplier_percent=300)
        self.allow_resend(phone)
        t3 = now_ms()
        sent = self.send_code(phone)
        # 5 min x 3 = 15 min, which is also the cap
        self.assertAlmostEqual(sent.expires_at_ms - t3, 15 * MIN_MS, delta=now_ms() - t3 + 2000)
        self.assertIn("15分钟", self.sms_to(phone, t3)[0])
        # a session opened now may idle three times as long (capped by the
        # absolute session lifetime)
        code = self.code_sent_to(phone, t3)
        p = auth_pb()
        second = self.auth("SignInWithCode",
                           p.SignInWithCodeRequest(phone=phone, code=code,
                                                   device=p.Device(device_id="a11y-slow-2",
                                                                   name="平板")),
                           p.TokenResponse)
        idle = second.refresh_expires_at_ms - t3
        self.assertGreater(idle, base_idle * 2.5)

    # --- tests: trusted relative -------------------------------------------

    def test_trusted_relative_receives_the_sign_in_codes_once_verified(self):
        phone = random_phone()
        relative = random_phone()
        tok, _ = self.sign_in(phone)
        account = tok.account.account_id
        t0 = now_ms()
        started = self.start_relative(tok.access_token, relative)
        self.assertEqual(started.masked_phone, masked(relative))
        self.assertGreater(started.expires_at_ms, t0)
        self.assertLessEqual(started.expires_at_ms, now_ms() + 15 * MIN_MS)
        code = self.code_sent_to(relative, t0)
        self.assertIn("亲属", self.sms_to(relative, t0)[0])
        # not yet verified: nothing changes for sign-in, no version bump
        self.assertEqual(self.get(tok.access_token).trusted_relative_masked_phone, "")
        self.assertEqual(self.get(tok.access_token).version, 0)
        h = self.a11y_hash(account)
        self.assertNotIn("relative_enc", h)
        self.assertNotIn(relative, str(h))  # pending number sealed, never in clear

        s = self.confirm_relative(tok.access_token, code)
        self.assertEqual(s.trusted_relative_masked_phone, masked(relative))
        self.assertEqual(s.version, 1)
        h = self.a11y_hash(account)
        self.assertTrue(h["relative_enc"].startswith("v1."))
        self.assertEqual(h["relative_masked"], masked(relative))
        self.assertNotIn("relative_pending_enc", h)
        self.assertNotIn(relative, str(h))
        # the code was single use
        self.assertCallFails(lambda: self.confirm_relative(tok.access_token, code),
                             grpc.StatusCode.FAILED_PRECONDITION, "NO_PENDING_RELATIVE")

        # sign-in codes of the account now go to the relative, who reads it out
        self.allow_resend(phone)
        t1 = now_ms()
        again, sent = self.sign_in(phone, device="a11y-device-2", code_to=relative)
        self.assertEqual(sent.masked_phone, masked(relative))
        self.assertEqual(self.sms_to(phone, t1), [])
        self.assertEqual(again.account.account_id, account)

        # removed: codes go to the account's own phone again
        s = self.remove_relative(tok.access_token)
        self.assertEqual(s.trusted_relative_masked_phone, "")
        self.assertEqual(s.version, 2)
        self.assertEqual(self.remove_relative(tok.access_token).version, 2)  # nothing to remove
        self.assertNotIn("relative_enc", self.a11y_hash(account))
        self.allow_resend(phone)
        t2 = now_ms()
        sent = self.send_code(phone)
        self.assertEqual(sent.masked_phone, masked(phone))
        self.code_sent_to(phone, t2)
        self.assertEqual(self.sms_to(relative, t2), [])

        # neither number nor any code reached the server log
        log = self.srv.log()
        self.assertNotIn(phone, log)
        self.assertNotIn(relative, log)
        self.assertIsNone(re.search(r"(?<!\d)%s(?!\d)" % code, log))

    def test_adding_a_relative_needs_a_recent_sign_in_proof(self):
        phone = random_phone()
        tok, _ = self.sign_in(phone)
        account = tok.account.account_id
        # age the session's last proof of presence by an hour, then take a
        # token that carries it (Refresh copies auth_time from the session)
        self.redis.call("HSET", "{u:%s}:sess:%s" % (account, tok.session_id), "auth_time_ms",
                        str(now_ms() - 3600 * 1000))
        p = auth_pb()
        old = self.auth("Refresh", p.RefreshRequest(refresh_token=tok.refresh_token),
                        p.TokenResponse)
        self.assertCallFails(lambda: self.start_relative(old.access_token, random_phone()),
                             grpc.StatusCode.UNAUTHENTICATED, "STEP_UP_REQUIRED")
        # the other methods need no step-up
        self.get(old.access_token)
        self.remove_relative(old.access_token)
        # StepUp with a fresh code makes it possible again
        self.allow_resend(phone)
        t0 = now_ms()
        self.send_code(phone, purpose=p.CODE_PURPOSE_STEP_UP)
        fresh = self.auth("StepUp", p.StepUpRequest(code=self.code_sent_to(phone, t0)),
                          p.TokenResponse, token=old.access_token)
        relative = random_phone()
        self.assertEqual(self.start_relative(fresh.access_token, relative).masked_phone,
                         masked(relative))

    def test_the_accounts_own_number_cannot_be_its_relative(self):
        phone, tok = self.new_account()
        for form in (phone, "+86" + phone, "86" + phone):
            with self.subTest(form=form):
                self.assertCallFails(lambda: self.start_relative(tok.access_token, form),
                                     grpc.StatusCode.INVALID_ARGUMENT, "RELATIVE_IS_SELF")

    def test_a_malformed_relative_number_is_invalid_argument(self):
        _, tok = self.new_account()
        for bad in ("", "12345", "1391234567", "23912345678", "139 1234 5678", "1" * 100):
            with self.subTest(bad=bad[:20]):
                self.assertCallFails(lambda: self.start_relative(tok.access_token, bad),
                                     grpc.StatusCode.INVALID_ARGUMENT, "PHONE_INVALID")

    def test_confirm_without_start_is_failed_precondition(self):
        _, tok = self.new_account()
        self.assertCallFails(lambda: self.confirm_relative(tok.access_token, "123456"),
                             grpc.StatusCode.FAILED_PRECONDITION, "NO_PENDING_RELATIVE")

    def test_a_wrong_relative_code_fails_as_the_code_rules_say(self):
        _, tok = self.new_account()
        relative = random_phone()
        t0 = now_ms()
        self.start_relative(tok.access_token, relative)
        code = self.code_sent_to(relative, t0)
        wrong = "%06d" % ((int(code) + 1) % 10 ** 6)
        self.assertCallFails(lambda: self.confirm_relative(tok.access_token, wrong),
                             grpc.StatusCode.UNAUTHENTICATED, "CODE_INVALID")
        self.assertCallFails(lambda: self.confirm_relative(tok.access_token, "12ab"),
                             grpc.StatusCode.INVALID_ARGUMENT, "CODE_MALFORMED")
        self.assertEqual(self.get(tok.access_token).trusted_relative_masked_phone, "")
        s = self.confirm_relative(tok.access_token, code)
        self.assertEqual(s.trusted_relative_masked_phone, masked(relative))

    def test_a_pending_relative_past_its_code_validity_is_expired(self):
        _, tok = self.new_account()
        relative = random_phone()
        t0 = now_ms()
        self.start_relative(tok.access_token, relative)
        code = self.code_sent_to(relative, t0)
        # the clock cannot be moved: move the pending number's expiry instead
        self.redis.call("HSET", "{u:%s}:a11y" % tok.account.account_id,
                        "relative_pending_exp_ms", str(now_ms() - 1))
        self.assertCallFails(lambda: self.confirm_relative(tok.access_token, code),
                             grpc.StatusCode.UNAUTHENTICATED, "CODE_EXPIRED")
        self.assertEqual(self.get(tok.access_token).trusted_relative_masked_phone, "")

    def test_an_account_may_start_ten_relatives_a_day(self):
        _, tok = self.new_account()
        for _ in range(10):
            self.start_relative(tok.access_token, random_phone())
        err = self.assertCallFails(lambda: self.start_relative(tok.access_token, random_phone()),
                                   grpc.StatusCode.RESOURCE_EXHAUSTED, "RELATIVE_DAILY_LIMIT")
        md = dict(err.trailing_metadata() or ())
        st = t.status_pb().Status.FromString(md["grpc-status-details-bin"])
        retry = [d for d in st.details if d.type_url.endswith("/google.rpc.RetryInfo")]
        self.assertEqual(len(retry), 1)
        delay = t.error_details_pb().RetryInfo.FromString(retry[0].value).retry_delay
        # until the next midnight in Asia/Shanghai
        until_midnight = DAY_MS - (now_ms() + SHANGHAI_MS) % DAY_MS
        self.assertAlmostEqual(delay.seconds * 1000 + delay.nanos // 10 ** 6, until_midnight,
                               delta=5000)

    def test_a_second_start_replaces_the_pending_relative(self):
        _, tok = self.new_account()
        first, second = random_phone(), random_phone()
        t0 = now_ms()
        self.start_relative(tok.access_token, first)
        first_code = self.code_sent_to(first, t0)
        self.start_relative(tok.access_token, second)
        second_code = self.code_sent_to(second, t0)
        if first_code != second_code:
            # the first number's code no longer confirms: the second is pending
            self.assertCallFails(lambda: self.confirm_relative(tok.access_token, first_code),
                                 grpc.StatusCode.UNAUTHENTICATED, "CODE_INVALID")
        s = self.confirm_relative(tok.access_token, second_code)
        self.assertEqual(s.trusted_relative_masked_phone, masked(second))


if __name__ == "__main__":
    t.main()
