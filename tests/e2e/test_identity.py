"""fxb.v1.IdentityService end to end (regulation art. 9, 远程认证; PIPL art.
28/51): a signed-in L1 account starts a challenge, the face-verification
provider (the simulator fxb-ekyc-sim, with the dev key `fxb-admin keys init`
makes in development) signs an attestation over its nonce, and
CompleteVerification raises the account to L3 after checking, in order, the
ID number, the challenge and attestation, the population registry (the dev
registry imported by `fxb-admin registry import`) and one person one account.

Every test uses fresh random ID numbers, names and phones: the shared Redis
keeps bindings and daily counters between tests and runs."""
import os
import random
import shutil
import subprocess
import tempfile
import time

import grpc

import fxbtest as t

SVC = "/fxb.v1.IdentityService/"
EKYC_BIN = os.path.join(t.BUILD_DIR, "fxb-ekyc-sim")
DAY_MS = 24 * 3600 * 1000
SHANGHAI_MS = 8 * 3600 * 1000

INVALID = grpc.StatusCode.INVALID_ARGUMENT
PRECOND = grpc.StatusCode.FAILED_PRECONDITION
DENIED = grpc.StatusCode.PERMISSION_DENIED
EXISTS = grpc.StatusCode.ALREADY_EXISTS
EXHAUSTED = grpc.StatusCode.RESOURCE_EXHAUSTED

_rng = random.SystemRandom()
_NAME_CHARS = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾萧田董潘袁蔡蒋余于杜叶程魏苏吕丁任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦傅方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝龚邵万钱严覃武戴莫孔向汤伟芳娜敏静秀丽强磊军洋勇艳杰娟涛明超霞平刚桂"


def id_pb():
    return t.pb("fxb/v1/identity")


def check_char(d17):
    w = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
    return "10X98765432"[sum(int(c) * k for c, k in zip(d17, w)) % 11]


def make_id(region="410702", birth=None):
    """A valid 18-character ID number with a random birth date and sequence."""
    birth = birth or "%04d%02d%02d" % (_rng.randrange(1940, 2005), _rng.randrange(1, 13),
                                       _rng.randrange(1, 29))
    d17 = region + birth + "%03d" % _rng.randrange(1000)
    return d17 + check_char(d17)


def make_name():
    return "".join(_rng.choice(_NAME_CHARS) for _ in range(_rng.choice((2, 3))))


def masked_id(idn):
    return idn[:6] + "*" * 8 + idn[-4:]


def masked_name(name):
    return name[0] + "*" * (len(name) - 1)


class IdentityTest(t.TestCase):
    # every ID number and name a test sent, for the no-plaintext checks
    seen_ids, seen_names = set(), set()

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.srv = t.Server(extra_env=t.AUTH_ENV).__enter__()
        cls.data = cls.srv.env["FXB_DATA_DIR"]
        cls.key = os.path.join(cls.data, "keys", "ekyc", "ekyc-dev.pem")
        cls.pub = os.path.join(cls.data, "keys", "ekyc", "ekyc-dev.pub.pem")
        cls.tmp = tempfile.mkdtemp(prefix="fxb-e2e-idv.")

    @classmethod
    def tearDownClass(cls):
        cls.srv.__exit__(None, None, None)

    # --- helpers -------------------------------------------------------------
    def call(self, method, req, who, resp_cls):
        fn = self.srv.unary(SVC + method, type(req), resp_cls)
        return fn(req, metadata=who.md(), timeout=20)

    def start(self, who):
        return self.call("StartVerification", id_pb().StartVerificationRequest(), who,
                         id_pb().StartVerificationResponse)

    def complete(self, who, cid, name, idn, att, level=0):
        self.seen_ids.add(idn)
        self.seen_names.add(name)
        req = id_pb().CompleteVerificationRequest(challenge_id=cid, name=name, id_number=idn,
                                                  attestation=att, requested_level=level)
        return self.call("CompleteVerification", req, who, id_pb().Identity)

    def my_identity(self, who):
        return self.call("GetMyIdentity", id_pb().GetMyIdentityRequest(), who, id_pb().Identity)

    def attest(self, ch, idn, *extra, key=None, actions=None):
        """An attestation answering ch (a StartVerificationResponse: its nonce,
        and its liveness actions echoed in order unless actions is given; ""
        leaves the claim out) or a bare nonce (no actions)."""
        nonce = getattr(ch, "nonce", ch)
        if actions is None:
            actions = ",".join(getattr(ch, "liveness_actions", ()))
        extra = list(extra) + (["--actions", actions] if actions else [])
        r = subprocess.run([EKYC_BIN, "attest", "--key", key or self.key, "--nonce", nonce,
                            "--id", idn] + extra, capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 0, r.stderr)
        return r.stdout.strip()

    def register(self, *people):
        """Imports (name, id, district) rows into the dev registry through
        fxb-admin with the server's data directory."""
        path = os.path.join(self.tmp, "registry-%d.csv" % _rng.randrange(10 ** 9))
        with open(path, "w", encoding="utf-8") as f:
            f.write("# name,id_number,district\n")
            for name, idn, district in people:
                f.write("%s,%s,%s\n" % (name, idn, district))
        r = t.run_admin(["registry", "import", path], redis_url=self.srv.redis_url,
                        env={"FXB_DATA_DIR": self.data}, check=True)
        self.assertIn("imported %d registry records, 0 bad lines" % len(people), r.stdout)
        os.unlink(path)

    def person(self, district="410702"):
        """A fresh person in the registry: (name, id)."""
        name, idn = make_name(), make_id(district)
        self.register((name, idn, district))
        return name, idn

    def complete_fails(self, who, cid, name, idn, att, code, reason, level=0):
        with self.assertRaises(grpc.RpcError) as cm:
            self.complete(who, cid, name, idn, att, level)
        self.assertRpcError(cm.exception, code, reason)
        return cm.exception

    def verify(self, who, name, idn):
        ch = self.start(who)
        return self.complete(who, ch.challenge_id, name, idn, self.attest(ch, idn))

    # --- the happy path ----------------------------------------------------------
    def test_full_flow_raises_L1_to_L3_and_shows_only_masked_identity(self):
        name, idn = self.person()
        who = t.sign_in(self.srv)
        before = self.my_identity(who)
        self.assertEqual(before.assurance_level, 1)
        self.assertFalse(before.verified)
        self.assertEqual(before.masked_id_number, "")

        t0 = int(time.time() * 1000)
        ch = self.start(who)
        self.assertEqual(len(ch.challenge_id), 32)
        self.assertGreaterEqual(len(ch.nonce), 43)
        self.assertEqual(len(ch.liveness_actions), 2)
        self.assertEqual(len(set(ch.liveness_actions)), 2)
        for a in ch.liveness_actions:
            self.assertIn(a, ("blink", "turn_left", "turn_right", "nod", "open_mouth"))
        self.assertAlmostEqual(ch.expires_at_ms - t0, 5 * 60 * 1000, delta=10000)

        att = self.attest(ch, idn)
        got = self.complete(who, ch.challenge_id, name, idn, att)
        self.assertEqual(got.assurance_level, 3)
        self.assertTrue(got.verified)
        self.assertEqual(got.masked_id_number, masked_id(idn))
        self.assertEqual(got.masked_name, masked_name(name))
        self.assertEqual(got.household_district, "410702")
        self.assertAlmostEqual(got.verified_at_ms, int(time.time() * 1000), delta=10000)
        self.assertNotIn(idn, str(got))

        # the next token carries acr 3
        who.resp = t.auth_call(self.srv, "Refresh",
                               t.auth_pb().RefreshRequest(refresh_token=who.refresh))
        self.assertEqual(t.jwt_decode(who.access)[1]["acr"], 3)
        self.assertEqual(who.resp.account.assurance_level, 3)

        mine = self.my_identity(who)
        self.assertEqual(mine.assurance_level, 3)
        self.assertEqual(mine.masked_id_number, masked_id(idn))
        self.assertEqual(mine.masked_name, masked_name(name))
        self.assertEqual(mine.verified_at_ms, got.verified_at_ms)

        # verified birth date for accessibility, in clear by design
        birth = t.redis_cmd(self.srv.redis_url, "HGET", "{u:%s}:identity" % who.account_id,
                            "birth_date")
        self.assertEqual(birth, idn[6:14].encode())

    def test_challenge_is_single_use_even_after_success(self):
        name, idn = self.person()
        who = t.sign_in(self.srv)
        ch = self.start(who)
        att = self.attest(ch, idn)
        self.complete(who, ch.challenge_id, name, idn, att)
        self.complete_fails(who, ch.challenge_id, name, idn, att, PRECOND, "CHALLENGE_USED")

    def test_reverifying_the_same_identity_is_allowed(self):
        name, idn = self.person()
        who = t.sign_in(self.srv)
        self.verify(who, name, idn)
        again = self.verify(who, name, idn)
        self.assertEqual(again.masked_id_number, masked_id(idn))

    # --- 1. the ID number --------------------------------------------------------
    def test_id_number_is_checked_first(self):
        who = t.sign_in(self.srv)
        good = make_id()
        bad_check = good[:17] + ("0" if good[17] != "0" else "1")
        d17 = "99" + good[2:17]
        bad_region = d17 + check_char(d17)
        d17 = good[:6] + "20991231" + good[14:17]
        future = d17 + check_char(d17)
        # neither challenge nor attestation is valid: the ID number answers first
        for idn, reason in ((bad_check, "ID_NUMBER_CHECK"), (bad_region, "ID_NUMBER_REGION"),
                            (future, "ID_NUMBER_BIRTH_DATE")):
            with self.subTest(reason=reason):
                err = self.complete_fails(who, "0" * 32, make_name(), idn, "x.y.z", INVALID,
                                          reason)
                self.assertNotIn(idn, err.details())

    # --- 2. challenge and attestation --------------------------------------------
    def test_challenge_unknown_other_session_and_expired(self):
        name, idn = self.person()
        who = t.sign_in(self.srv)
        ch = self.start(who)
        att = self.attest(ch, idn)
        self.complete_fails(who, "%032x" % _rng.getrandbits(128), name, idn, att, PRECOND,
                            "CHALLENGE_UNKNOWN")
        # the same account on another device: another session
        other = t.sign_in(self.srv, who.phone)
        self.assertNotEqual(other.sid, who.sid)
        self.complete_fails(other, ch.challenge_id, name, idn, att, PRECOND, "CHALLENGE_UNKNOWN")
        # another account cannot use it either
        stranger = t.sign_in(self.srv)
        self.complete_fails(stranger, ch.challenge_id, name, idn, att, PRECOND,
                            "CHALLENGE_UNKNOWN")
        # expiry: move exp into the past
        ch2 = self.start(who)
        t.redis_cmd(self.srv.redis_url, "HSET",
                    "{u:%s}:idv:challenge:%s" % (who.account_id, ch2.challenge_id), "exp",
                    int(time.time() * 1000) - 1)
        self.complete_fails(who, ch2.challenge_id, name, idn, self.attest(ch2, idn),
                            PRECOND, "CHALLENGE_EXPIRED")

    def test_hostile_attestations_are_refused(self):
        other_dir = os.path.join(self.tmp, "other-key")
        r = subprocess.run([EKYC_BIN, "keygen", other_dir], capture_output=True, text=True)
        self.assertEqual(r.returncode, 0, r.stderr)
        wrong_key = os.path.join(other_dir, "ekyc-dev.pem")
        cases = [
            ("wrong key", lambda n, i: self.attest(n, i, key=wrong_key),
             "ATTESTATION_SIGNATURE_INVALID"),
            ("alg none", lambda n, i: self.attest(n, i, "--alg", "none"),
             "ATTESTATION_ALG_NOT_ALLOWED"),
            ("HS256 keyed with the public key",
             lambda n, i: self.attest(n, i, "--alg", "HS256", "--hmac-key-file", self.pub),
             "ATTESTATION_ALG_NOT_ALLOWED"),
            ("low score", lambda n, i: self.attest(n, i, "--score", "84.9"),
             "ATTESTATION_SCORE_TOO_LOW"),
            ("mismatched ID hash", lambda n, i: self.attest(n, make_id()),
             "ATTESTATION_ID_MISMATCH"),
            ("liveness failed", lambda n, i: self.attest(n, i, "--liveness", "fail"),
             "ATTESTATION_LIVENESS_FAILED"),
            ("stale", lambda n, i: self.attest(n, i, "--iat", str(int(time.time()) - 400),
                                               "--exp", str(int(time.time()) + 600)),
             "ATTESTATION_STALE"),
            ("another challenge's nonce",
             lambda n, i: self.attest("A" * 43, i, actions=",".join(n.liveness_actions)),
             "ATTESTATION_NONCE_MISMATCH"),
        ]
        for what, make, reason in cases:
            with self.subTest(what):
                who = t.sign_in(self.srv)
                name, idn = self.person()
                ch = self.start(who)
                self.complete_fails(who, ch.challenge_id, name, idn, make(ch, idn),
                                    DENIED, reason)
                # a failed attestation burns the challenge: replaying it with a
                # good attestation does not help
                self.complete_fails(who, ch.challenge_id, name, idn, self.attest(ch, idn),
                                    PRECOND, "CHALLENGE_USED")
                self.assertEqual(self.my_identity(who).assurance_level, 1)

    def test_attestation_must_echo_the_challenges_actions_in_order(self):
        # the echoed list must equal the challenge's: same actions, same order
        def others(ch):
            return [a for a in ("blink", "turn_left", "turn_right", "nod", "open_mouth")
                    if a not in ch.liveness_actions]
        cases = [
            ("missing", lambda ch: ""),
            ("another action", lambda ch: ",".join([ch.liveness_actions[0], others(ch)[0]])),
            ("other order", lambda ch: ",".join(reversed(ch.liveness_actions))),
            ("one left out", lambda ch: ch.liveness_actions[0]),
            ("one more", lambda ch: ",".join(list(ch.liveness_actions) + others(ch)[:1])),
        ]
        for what, actions in cases:
            with self.subTest(what):
                who = t.sign_in(self.srv)
                name, idn = self.person()
                ch = self.start(who)
                self.complete_fails(who, ch.challenge_id, name, idn,
                                    self.attest(ch, idn, actions=actions(ch)), DENIED,
                                    "ATTESTATION_ACTIONS_MISMATCH")
                self.complete_fails(who, ch.challenge_id, name, idn, self.attest(ch, idn),
                                    PRECOND, "CHALLENGE_USED")
                self.assertEqual(self.my_identity(who).assurance_level, 1)

    def test_actions_are_checked_right_after_liveness(self):
        who = t.sign_in(self.srv)
        name, idn = self.person()
        ch = self.start(who)
        # liveness failed and no actions: liveness answers
        self.complete_fails(who, ch.challenge_id, name, idn,
                            self.attest(ch, idn, "--liveness", "fail", actions=""), DENIED,
                            "ATTESTATION_LIVENESS_FAILED")
        # no actions and a low score: actions answer
        ch = self.start(who)
        self.complete_fails(who, ch.challenge_id, name, idn,
                            self.attest(ch, idn, "--score", "10", actions=""), DENIED,
                            "ATTESTATION_ACTIONS_MISMATCH")

    def test_score_at_the_threshold_passes(self):
        name, idn = self.person()
        who = t.sign_in(self.srv)
        ch = self.start(who)
        got = self.complete(who, ch.challenge_id, name, idn,
                            self.attest(ch, idn, "--score", "85"))
        self.assertEqual(got.assurance_level, 3)

    # --- 3. the population registry ----------------------------------------------
    def test_registry_mismatch(self):
        name, idn = self.person()
        who = t.sign_in(self.srv)
        wrong = name + "伟" if len(name) < 4 else name[:-1]
        ch = self.start(who)
        self.complete_fails(who, ch.challenge_id, wrong, idn, self.attest(ch, idn), PRECOND,
                            "REGISTRY_MISMATCH")
        unknown = make_id()
        ch = self.start(who)
        self.complete_fails(who, ch.challenge_id, name, unknown, self.attest(ch, unknown),
                            PRECOND, "REGISTRY_MISMATCH")
        self.assertEqual(self.my_identity(who).assurance_level, 1)

    def test_registry_import_reports_bad_lines_by_number_only(self):
        good = make_id()
        path = os.path.join(self.tmp, "bad.ndjson")
        bad_id = good[:17] + ("0" if good[17] != "0" else "1")
        with open(path, "w", encoding="utf-8") as f:
            f.write('{"name": "测试", "id_number": "%s", "district": "410702"}\n' % good)
            f.write("测试,%s,410702\n" % bad_id)
            f.write("only,two\n")
        r = t.run_admin(["registry", "import", path], redis_url=self.srv.redis_url,
                        env={"FXB_DATA_DIR": self.data})
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertIn("imported 1 registry records, 2 bad lines", r.stdout)
        self.assertIn("line 2: ID_NUMBER_CHECK", r.stderr)
        self.assertIn("line 3:", r.stderr)
        self.assertNotIn(bad_id, r.stderr + r.stdout)
        self.assertNotIn(good, r.stderr + r.stdout)
        self.seen_ids.update((good, bad_id))

    # --- 4. one person, one account ----------------------------------------------
    def test_id_number_bound_to_another_account(self):
        name, idn = self.person()
        first = t.sign_in(self.srv)
        self.verify(first, name, idn)
        second = t.sign_in(self.srv)
        ch = self.start(second)
        err = self.complete_fails(second, ch.challenge_id, name, idn, self.attest(ch, idn),
                                  EXISTS, "ID_ALREADY_BOUND")
        self.assertIn("sign in with the account that holds it", err.details())
        self.assertIn("service hall", err.details())
        _, loc = t.decode_status_details(err)
        self.assertIn("大厅", loc.message)
        self.assertEqual(self.my_identity(second).assurance_level, 1)

    # --- L2: real name (name + ID number against the registry, no face) -----------------
    def test_L2_needs_no_attestation_and_raises_the_account_to_2(self):
        name, idn = self.person()
        who = t.sign_in(self.srv)
        ch = self.start(who)
        got = self.complete(who, ch.challenge_id, name, idn, "", level=2)
        self.assertEqual(got.assurance_level, 2)
        self.assertTrue(got.verified)
        self.assertEqual(got.masked_id_number, masked_id(idn))
        self.assertEqual(got.masked_name, masked_name(name))
        self.assertEqual(got.household_district, "410702")
        mine = self.my_identity(who)
        self.assertEqual(mine.assurance_level, 2)
        self.assertTrue(mine.verified)
        self.assertEqual(mine.masked_id_number, masked_id(idn))
        who.resp = t.auth_call(self.srv, "Refresh",
                               t.auth_pb().RefreshRequest(refresh_token=who.refresh))
        self.assertEqual(t.jwt_decode(who.access)[1]["acr"], 2)
        # the challenge was consumed
        self.complete_fails(who, ch.challenge_id, name, idn, "", PRECOND, "CHALLENGE_USED",
                            level=2)
        # a face verification later raises it to L3
        self.assertEqual(self.verify(who, name, idn).assurance_level, 3)

    def test_L2_still_needs_a_challenge(self):
        name, idn = self.person()
        who = t.sign_in(self.srv)
        self.complete_fails(who, "%032x" % _rng.getrandbits(128), name, idn, "", PRECOND,
                            "CHALLENGE_UNKNOWN", level=2)
        self.assertEqual(self.my_identity(who).assurance_level, 1)

    def test_L2_takes_no_attestation(self):
        name, idn = self.person()
        who = t.sign_in(self.srv)
        ch = self.start(who)
        self.complete_fails(who, ch.challenge_id, name, idn, self.attest(ch, idn), INVALID,
                            "ATTESTATION_NOT_EXPECTED", level=2)
        # refused before the challenge was read: it still serves
        self.assertEqual(self.complete(who, ch.challenge_id, name, idn, "", level=2)
                         .assurance_level, 2)

    def test_requested_level_must_be_2_or_3(self):
        name, idn = self.person()
        who = t.sign_in(self.srv)
        for level in (1, 4):
            with self.subTest(level=level):
                ch = self.start(who)
                self.complete_fails(who, ch.challenge_id, name, idn, "", INVALID,
                                    "REQUESTED_LEVEL_INVALID", level=level)
        ch = self.start(who)
        self.assertEqual(self.complete(who, ch.challenge_id, name, idn, self.attest(ch, idn),
                                       level=3).assurance_level, 3)

    def test_L2_name_and_id_number_must_match_the_registry(self):
        name, idn = self.person()
        who = t.sign_in(self.srv)
        wrong = name + "伟" if len(name) < 4 else name[:-1]
        ch = self.start(who)
        self.complete_fails(who, ch.challenge_id, wrong, idn, "", PRECOND, "REGISTRY_MISMATCH",
                            level=2)
        bad = idn[:17] + ("0" if idn[17] != "0" else "1")
        ch = self.start(who)
        self.complete_fails(who, ch.challenge_id, name, bad, "", INVALID, "ID_NUMBER_CHECK",
                            level=2)
        self.assertEqual(self.my_identity(who).assurance_level, 1)

    def test_L2_one_person_one_account(self):
        name, idn = self.person()
        first = t.sign_in(self.srv)
        ch = self.start(first)
        self.complete(first, ch.challenge_id, name, idn, "", level=2)
        second = t.sign_in(self.srv)
        ch = self.start(second)
        self.complete_fails(second, ch.challenge_id, name, idn, "", EXISTS, "ID_ALREADY_BOUND",
                            level=2)
        self.assertEqual(self.my_identity(second).assurance_level, 1)

    def test_L2_never_lowers_an_L3_account(self):
        name, idn = self.person()
        who = t.sign_in(self.srv)
        self.verify(who, name, idn)
        ch = self.start(who)
        got = self.complete(who, ch.challenge_id, name, idn, "", level=2)
        self.assertEqual(got.assurance_level, 3)
        self.assertEqual(self.my_identity(who).assurance_level, 3)
        self.assertEqual(t.redis_cli(self.srv.redis_url, "HGET",
                                     "{u:%s}:identity" % who.account_id, "level"), "3")

    # --- attempt limits -------------------------------------------------------------
    def assert_exhausted(self, err):
        self.assertRpcError(err, EXHAUSTED, "VERIFICATION_ATTEMPTS_EXHAUSTED")
        info = t.retry_info(err)
        self.assertIsNotNone(info, "no RetryInfo")
        now = int(time.time() * 1000)
        to_midnight = ((now + SHANGHAI_MS) // DAY_MS + 1) * DAY_MS - SHANGHAI_MS - now
        retry_ms = info.retry_delay.seconds * 1000 + info.retry_delay.nanos // 10 ** 6
        self.assertAlmostEqual(retry_ms, to_midnight, delta=15000)

    def test_five_failures_per_account_per_day(self):
        who = t.sign_in(self.srv)
        for _ in range(5):
            idn = make_id()
            bad = idn[:17] + ("0" if idn[17] != "0" else "1")
            self.complete_fails(who, "0" * 32, make_name(), bad, "x", INVALID, "ID_NUMBER_CHECK")
        # now even a perfect attempt is refused until midnight (China Standard Time)
        name, idn = self.person()
        ch = self.start(who)
        with self.assertRaises(grpc.RpcError) as cm:
            self.complete(who, ch.challenge_id, name, idn, self.attest(ch, idn))
        self.assert_exhausted(cm.exception)

    def test_five_failures_per_id_number_per_day(self):
        name, idn = self.person()
        for _ in range(5):
            who = t.sign_in(self.srv)
            ch = self.start(who)
            self.complete_fails(who, ch.challenge_id, name, idn,
                                self.attest(ch, idn, "--score", "10"), DENIED,
                                "ATTESTATION_SCORE_TOO_LOW")
        who = t.sign_in(self.srv)
        ch = self.start(who)
        with self.assertRaises(grpc.RpcError) as cm:
            self.complete(who, ch.challenge_id, name, idn, self.attest(ch, idn))
        self.assert_exhausted(cm.exception)
        # another person on the same accounts' server is unaffected
        name2, idn2 = self.person()
        self.assertEqual(self.verify(t.sign_in(self.srv), name2, idn2).assurance_level, 3)

    # --- unbinding (DeleteMyIdentity) ------------------------------------------------
    def delete_identity(self, md):
        fn = self.srv.unary(SVC + "DeleteMyIdentity", id_pb().DeleteMyIdentityRequest,
                            id_pb().DeleteMyIdentityResponse)
        return fn(id_pb().DeleteMyIdentityRequest(), metadata=md, timeout=20)

    def audit_entries(self):
        """The audit stream as redis-cli prints it: one id, field or value a
        line."""
        return t.redis_cli(self.srv.redis_url, "XRANGE", "fxb:audit", "-", "+")

    def test_unbinding_releases_the_id_number_lowers_the_level_and_is_audited(self):
        name, idn = self.person()
        first = t.sign_in(self.srv)
        self.verify(first, name, idn)
        got = self.delete_identity(first.md())
        self.assertEqual(got.assurance_level, 1)
        mine = self.my_identity(first)
        self.assertEqual(mine.assurance_level, 1)
        self.assertFalse(mine.verified)
        self.assertEqual(mine.masked_id_number, "")
        # one person, one account: the number is free for another account now
        second = t.sign_in(self.srv)
        self.assertEqual(self.verify(second, name, idn).assurance_level, 3)
        # nothing left to unbind for the first account
        with self.assertRaises(grpc.RpcError) as cm:
            self.delete_identity(first.md())
        self.assertRpcError(cm.exception, grpc.StatusCode.NOT_FOUND, "IDENTITY_NOT_VERIFIED")
        # the audit record: who, whom, what, why, when -- ids only
        stream = self.audit_entries()
        lines = stream.splitlines()
        self.assertIn(first.account_id, lines)
        i = lines.index(first.account_id)
        rec = dict(zip(lines[i - 1::2], lines[i::2]))
        self.assertEqual(rec.get("actor"), first.account_id)
        self.assertEqual(rec.get("subject"), first.account_id)
        self.assertEqual(rec.get("action"), "identity.unbind")
        self.assertIn("at_ms", rec)
        self.assertAlmostEqual(int(rec["at_ms"]), int(time.time() * 1000), delta=60000)
        for needle in (idn, idn.lower(), name, masked_id(idn), masked_name(name)):
            self.assertNotIn(needle, stream, "personal data in the audit stream")

    def test_unbinding_keeps_a_binding_another_account_holds(self):
        name, idn = self.person()
        first = t.sign_in(self.srv)
        self.verify(first, name, idn)
        idx = t.redis_cli(self.srv.redis_url, "HGET", "{u:%s}:identity" % first.account_id,
                          "id_idx")
        key = "fxb:idnum:" + idx
        self.assertEqual(t.redis_cli(self.srv.redis_url, "GET", key), first.account_id)
        # as if another account held the number meanwhile (a hall re-binding)
        t.redis_cli(self.srv.redis_url, "SET", key, "someone-else")
        try:
            self.assertEqual(self.delete_identity(first.md()).assurance_level, 1)
            self.assertEqual(t.redis_cli(self.srv.redis_url, "GET", key), "someone-else")
        finally:
            t.redis_cli(self.srv.redis_url, "DEL", key)

    def test_unbinding_needs_a_recent_proof_of_presence(self):
        name, idn = self.person()
        who = t.sign_in(self.srv)
        self.verify(who, name, idn)
        claims = t.jwt_decode(who.access)[1]
        now = int(time.time())
        stale = t.forge_token(self.srv, base=claims, auth_time=now - 3600, iat=now, nbf=now,
                              exp=now + 600)
        with self.assertRaises(grpc.RpcError) as cm:
            self.delete_identity(t.bearer(stale))
        self.assertRpcError(cm.exception, grpc.StatusCode.UNAUTHENTICATED, "STEP_UP_REQUIRED")
        mine = self.my_identity(who)
        self.assertTrue(mine.verified)
        self.assertEqual(mine.assurance_level, 3)

    # --- personal data ------------------------------------------------------------
    def test_no_plaintext_id_number_or_name_in_redis_or_log(self):
        # a full flow of its own, so this holds even when run alone
        name, idn = self.person()
        who = t.sign_in(self.srv)
        self.verify(who, name, idn)
        self.assertEqual(self.my_identity(who).masked_id_number, masked_id(idn))
        ids, names = set(self.seen_ids), set(self.seen_names)
        self.assertIn(idn, ids)
        needles = [i.encode() for i in ids] + [i.lower().encode() for i in ids] + \
                  [n.encode("utf-8") for n in names]
        dump = t.redis_dump(self.srv.redis_url)
        self.assertTrue(any(k.startswith(b"fxb:idnum:") for k, _ in dump))
        self.assertTrue(any(k.startswith(b"fxb:registry:dev:") for k, _ in dump))
        for key, values in dump:
            # enterprise records, proxy grants and inboxes (other tests') hold
            # registered business names, public data that a random
            # two-character person name can be part of
            if key.startswith((b"fxb:entreg:", b"{e:", b"{g:")) or key.endswith(b":inbox"):
                continue
            for blob in [key] + values:
                for needle in needles:
                    self.assertNotIn(needle, blob, "plaintext personal data under %r" % key)
        log = self.srv.log().encode("utf-8", "replace")
        for needle in needles:
            self.assertNotIn(needle, log, "plaintext personal data in the server log")


class RekeyTest(t.TestCase):
    """`fxb-admin rekey` after `fxb-admin keys rotate-data`: every sealed
    field is re-encrypted under the new data key, the data still reads
    through a server that loaded the new key, and a second run changes
    nothing. Uses a Redis database of its own: values sealed by other
    tests' servers (other key sets) would not open here."""

    SEALED_FIELDS = {"account": ("phone_enc",), "a11y": ("relative_enc", "relative_pending_enc"),
                     "identity": ("id_enc", "name_enc"), "material": ("number_enc",),
                     "payout": ("account_enc", "name_enc")}

    @staticmethod
    def kind_of(key):
        """"{u:<id>}:identity" -> "identity"; "{u:<id>}:material:<mid>" ->
        "material" (one hash per wallet entry)."""
        suffix = key.rsplit("}:", 1)[-1]
        return "material" if suffix.startswith("material:") else suffix

    def sealed_values(self, url):
        """[(key, field, value)] of every sealed field in the database."""
        out = []
        for key, _ in t.redis_dump(url):
            k = key.decode()
            fields = ()
            if k.startswith("{u:") or (k.startswith("{p:") and k.endswith("}:payout")):
                fields = self.SEALED_FIELDS.get(self.kind_of(k), ())
            elif k.startswith("fxb:registry:dev:"):
                fields = ("district_enc",)
            for f in fields:
                v = t.redis_cmd(url, "HGET", k, f)
                if v is not None:
                    out.append((k, f, v.decode()))
        return out

    def a11y_call(self, srv, who, method, req, resp_cls):
        fn = srv.unary("/fxb.v1.AccessibilityService/" + method, type(req), resp_cls)
        return fn(req, metadata=who.md(), timeout=20)

    def test_rekey_moves_every_sealed_value_to_the_new_key(self):
        url = t.redis_url_db(t.REDIS_URL, 7)
        t.redis_cmd(url, "FLUSHDB")
        a11y = t.pb("fxb/v1/accessibility")
        with t.Server(extra_env=t.AUTH_ENV, redis_url=url) as srv:
            data = srv.env["FXB_DATA_DIR"]
            admin_env = {"FXB_DATA_DIR": data}
            key = os.path.join(data, "keys", "ekyc", "ekyc-dev.pem")
            name, idn = make_name(), make_id()
            path = os.path.join(data, "registry-rekey.csv")
            with open(path, "w", encoding="utf-8") as f:
                f.write("%s,%s,410702\n" % (name, idn))
            t.run_admin(["registry", "import", path], redis_url=url, env=admin_env, check=True)
            os.unlink(path)
            # an L3 identity
            who = t.sign_in(srv)
            fn = srv.unary(SVC + "StartVerification", id_pb().StartVerificationRequest,
                           id_pb().StartVerificationResponse)
            ch = fn(id_pb().StartVerificationRequest(), metadata=who.md(), timeout=20)
            r = subprocess.run([EKYC_BIN, "attest", "--key", key, "--nonce", ch.nonce, "--id", idn,
                                "--actions", ",".join(ch.liveness_actions)],
                               capture_output=True, text=True, timeout=30)
            self.assertEqual(r.returncode, 0, r.stderr)
            fn = srv.unary(SVC + "CompleteVerification", id_pb().CompleteVerificationRequest,
                           id_pb().Identity)
            fn(id_pb().CompleteVerificationRequest(challenge_id=ch.challenge_id, name=name,
                                                   id_number=idn, attestation=r.stdout.strip()),
               metadata=who.md(), timeout=20)
            # a confirmed trusted relative, and another account's pending one
            relative = t.random_phone()
            self.a11y_call(srv, who, "StartTrustedRelative",
                           a11y.StartTrustedRelativeRequest(relative_phone=relative),
                           a11y.StartTrustedRelativeResponse)
            self.a11y_call(srv, who, "ConfirmTrustedRelative",
                           a11y.ConfirmTrustedRelativeRequest(code=t.last_code(relative, url)),
                           a11y.AccessibilitySettings)
            other = t.sign_in(srv)
            self.a11y_call(srv, other, "StartTrustedRelative",
                           a11y.StartTrustedRelativeRequest(relative_phone=t.random_phone()),
                           a11y.StartTrustedRelativeResponse)
            # an electronic licence in the wallet (its number is sealed)
            licence_no = "XXHR" + make_id()[6:]
            t.run_admin(["licence", "issue", "--phone", who.phone, "--type", "household_register",
                         "--name", "居民户口簿", "--number", licence_no, "--issuer", "新乡市公安局"],
                        redis_url=url, env=admin_env, check=True)
            # a payout account for benefits (number and name sealed, owner
            # the person's profile subject)
            bpb = t.pb("fxb/v1/benefit")
            payout_no = "62220" + make_id()[:13]
            t.set_level(srv, who, 3)  # the verified level, now in the token
            fn = srv.unary("/fxb.v1.BenefitService/SetPayoutAccount",
                           bpb.SetPayoutAccountRequest, bpb.PayoutAccount)
            fn(bpb.SetPayoutAccountRequest(bank_name="中国工商银行新乡分行",
                                           account_number=payout_no, account_name=name),
               metadata=who.md(), timeout=20)
            before = self.sealed_values(url)
            seen = {("registry" if k.startswith("fxb:registry:") else self.kind_of(k), f)
                    for k, f, _ in before}
            self.assertEqual(seen, {("account", "phone_enc"), ("a11y", "relative_enc"),
                                    ("a11y", "relative_pending_enc"), ("identity", "id_enc"),
                                    ("identity", "name_enc"), ("registry", "district_enc"),
                                    ("material", "number_enc"), ("payout", "account_enc"),
                                    ("payout", "name_enc")})
            old_kids = {v.split(".")[1] for _, _, v in before}
            self.assertEqual(len(old_kids), 1)
            srv.stop()

            rot = t.run_admin(["keys", "rotate-data"], redis_url=url, env=admin_env, check=True)
            new_kid = rot.stdout.split()[2]
            self.assertNotIn(new_kid, old_kids)
            out = t.run_admin(["rekey", "--batch", "2"], redis_url=url, env=admin_env, check=True)
            self.assertIn("%d values re-encrypted, 0 already current" % len(before), out.stdout)
            self.assertIn("0 failed", out.stdout)
            after = self.sealed_values(url)
            self.assertEqual(len(after), len(before))
            for k, f, v in after:
                self.assertTrue(v.startswith("v1.%s." % new_kid), "%s %s not rekeyed" % (k, f))
            # counts only: no personal data in what rekey prints
            for needle in (idn, name, relative, who.phone, other.phone, licence_no, payout_no):
                self.assertNotIn(needle, out.stdout + out.stderr)

            # a server that loaded the new key set still reads everything
            with t.Server(extra_env=dict(t.AUTH_ENV, FXB_DATA_DIR=data), redis_url=url) as srv2:
                # the account's code goes to its trusted relative: the
                # phone index, relative_enc and phone_enc all read again
                t.allow_resend(srv2, who.phone)
                t.send_code(srv2, who.phone)
                a = t.auth_pb()
                resp = t.auth_call(srv2, "SignInWithCode", a.SignInWithCodeRequest(
                    phone=who.phone, code=t.last_code(relative, url),
                    device=a.Device(device_id=t.random_device_id(), name="测试手机")))
                again = t.SignedIn(who.phone, "rekey-device", resp)
                self.assertEqual(again.account_id, who.account_id)
                fn = srv2.unary(SVC + "GetMyIdentity", id_pb().GetMyIdentityRequest,
                                id_pb().Identity)
                mine = fn(id_pb().GetMyIdentityRequest(), metadata=again.md(), timeout=20)
                self.assertEqual(mine.assurance_level, 3)
                self.assertEqual(mine.masked_id_number, masked_id(idn))
                self.assertEqual(mine.masked_name, masked_name(name))
                fn = srv2.unary("/fxb.v1.BenefitService/GetPayoutAccount",
                                bpb.GetPayoutAccountRequest, bpb.PayoutAccount)
                acct = fn(bpb.GetPayoutAccountRequest(), metadata=again.md(), timeout=20)
                self.assertTrue(acct.set)
                self.assertTrue(acct.account_masked.endswith(payout_no[-4:]), acct.account_masked)

            # a second run has nothing to do
            out = t.run_admin(["rekey"], redis_url=url, env=admin_env, check=True)
            self.assertIn("0 values re-encrypted, %d already current" % len(before), out.stdout)
            self.assertEqual(self.sealed_values(url), after)
        t.redis_cmd(url, "FLUSHDB")

    def test_rekey_reports_values_it_cannot_open_and_fails(self):
        url = t.redis_url_db(t.REDIS_URL, 8)
        t.redis_cmd(url, "FLUSHDB")
        tmp = tempfile.mkdtemp(prefix="fxb-e2e-rekey.")
        try:
            t.run_admin(["keys", "init"], env={"FXB_DATA_DIR": tmp}, check=True)
            t.redis_cmd(url, "HSET", "{u:acc1}:account", "phone_enc", "v1.zzz.AAAA")
            r = t.run_admin(["rekey"], redis_url=url, env={"FXB_DATA_DIR": tmp})
            self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
            self.assertIn("1 failed", r.stdout)
            self.assertIn("{u:acc1}:account phone_enc", r.stderr)
            self.assertEqual(t.redis_cmd(url, "HGET", "{u:acc1}:account", "phone_enc"),
                             b"v1.zzz.AAAA")
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
            t.redis_cmd(url, "FLUSHDB")


class IdentityConfigTest(t.TestCase):
    """Settings of the identity service that need a server of their own."""

    def test_min_score_is_configurable(self):
        with t.Server(extra_env=dict(t.AUTH_ENV, FXB_EKYC_MIN_SCORE="95")) as srv:
            data = srv.env["FXB_DATA_DIR"]
            key = os.path.join(data, "keys", "ekyc", "ekyc-dev.pem")
            name, idn = make_name(), make_id()
            path = os.path.join(data, "registry-score.csv")
            with open(path, "w", encoding="utf-8") as f:
                f.write("%s,%s,410702\n" % (name, idn))
            t.run_admin(["registry", "import", path], redis_url=srv.redis_url,
                        env={"FXB_DATA_DIR": data}, check=True)
            os.unlink(path)
            who = t.sign_in(srv)

            def attempt(score):
                fn = srv.unary(SVC + "StartVerification", id_pb().StartVerificationRequest,
                               id_pb().StartVerificationResponse)
                ch = fn(id_pb().StartVerificationRequest(), metadata=who.md(), timeout=20)
                r = subprocess.run([EKYC_BIN, "attest", "--key", key, "--nonce", ch.nonce, "--id",
                                    idn, "--score", score, "--actions",
                                    ",".join(ch.liveness_actions)], capture_output=True,
                                   text=True, timeout=30)
                self.assertEqual(r.returncode, 0, r.stderr)
                req = id_pb().CompleteVerificationRequest(challenge_id=ch.challenge_id, name=name,
                                                          id_number=idn,
                                                          attestation=r.stdout.strip())
                fn = srv.unary(SVC + "CompleteVerification", id_pb().CompleteVerificationRequest,
                               id_pb().Identity)
                return fn(req, metadata=who.md(), timeout=20)

            with self.assertRaises(grpc.RpcError) as cm:
                attempt("90")  # passes the default 85, not this server's 95
            self.assertRpcError(cm.exception, DENIED, "ATTESTATION_SCORE_TOO_LOW")
            self.assertEqual(attempt("95").assurance_level, 3)

    def test_out_of_range_min_score_stops_start_up(self):
        rc, _, err = t.run_server_expect_exit(extra_env={"FXB_EKYC_MIN_SCORE": "101"})
        self.assertEqual(rc, 2, err)
        self.assertIn("FXB_EKYC_MIN_SCORE", err)

    def test_production_refuses_to_start_with_the_dev_provider_key(self):
        # production keys provisioned as an operator would (fxb-admin keys
        # init), plus the public half of the simulator's dev key
        tmp = tempfile.mkdtemp(prefix="fxb-e2e-devkey.")
        try:
            t.run_admin(["keys", "init"], env={"FXB_DATA_DIR": tmp, "FXB_ENV": "production"},
                        check=True)
            r = subprocess.run([EKYC_BIN, "keygen", os.path.join(tmp, "sim")],
                               capture_output=True, text=True, timeout=30)
            self.assertEqual(r.returncode, 0, r.stderr)
            files = {}
            for root, _, names in os.walk(os.path.join(tmp, "keys")):
                for n in names:
                    p = os.path.join(root, n)
                    with open(p, "rb") as f:
                        files[os.path.relpath(p, tmp)] = f.read()
            files = {k: v for k, v in files.items() if not k.startswith("keys/ekyc/")}
            with open(os.path.join(tmp, "sim", "ekyc-dev.pub.pem"), "rb") as f:
                files["keys/ekyc/ekyc-dev.pub.pem"] = f.read()
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        rc, _, err = t.run_server_expect_exit(
            extra_env={"FXB_ENV": "production", "FXB_DIAG": None}, data_files=files)
        self.assertEqual(rc, 2, err)
        self.assertIn("ekyc-dev", err)
        self.assertIn("development key", err)


if __name__ == "__main__":
    t.main()
