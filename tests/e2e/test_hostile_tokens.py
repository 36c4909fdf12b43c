"""Hostile access tokens against GetMe and ProbeSignedIn: every refusal is
UNAUTHENTICATED with the documented ErrorInfo reason (auth/token.h), and no
token text ever reaches the server log or the error message.

Tokens are forged with the server's own private key (openssl CLI), so that
each claim rule is reached past the signature check; a forged token with a
raised level and the admin role is accepted, which shows that the key, and
nothing else, is what the server trusts."""
import json
import os
import time
import uuid

import grpc

import fxbtest as t

UNAUTH = grpc.StatusCode.UNAUTHENTICATED


class HostileTokenTest(t.TestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.A = t.auth_pb()
        cls.D = t.diag_pb()
        cls.srv = t.Server(extra_env=t.AUTH_ENV).__enter__()
        cls.who = t.sign_in(cls.srv)
        cls.kid, cls.key_path = t.server_key_path(cls.srv)
        cls.claims = t.jwt_decode(cls.who.access)[1]

    @classmethod
    def tearDownClass(cls):
        cls.srv.__exit__(None, None, None)

    def setUp(self):
        self.presented = []

    def tearDown(self):
        log = self.srv.log()
        for tok in self.presented:
            if len(tok) >= 20:
                self.assertFalse(tok in log, "the server log holds a presented token")
            sig = tok.rsplit(".", 1)[-1]
            if len(sig) >= 20:
                self.assertFalse(sig in log, "the server log holds a token's signature")

    # --- calling ----------------------------------------------------------
    def targets(self):
        probe = self.srv.unary("/fxb.v1.DiagService/ProbeSignedIn", self.D.ProbeRequest,
                               self.D.ProbeResponse)
        get_me = self.srv.unary("/fxb.v1.AuthService/GetMe", self.A.GetMeRequest, self.A.Account)
        return (("GetMe", lambda md: get_me(self.A.GetMeRequest(), metadata=md, timeout=20)),
                ("ProbeSignedIn", lambda md: probe(self.D.ProbeRequest(), metadata=md,
                                                   timeout=20)))

    def refuse(self, token, reason, code=UNAUTH, header=None):
        """token (or the raw authorization header) is refused with reason
        on every target."""
        header = header if header is not None else "Bearer " + token
        self.presented.append(token)
        for name, fn in self.targets():
            with self.subTest(target=name, reason=reason):
                err = self.assertCallFails(lambda: fn([("authorization", header)]), code, reason)
                if len(token) >= 20:
                    self.assertNotIn(token, err.details() or "")
                    self.assertNotIn(token, t.status_details_message(err) or "")

    def refuse_raw(self, header, reason):
        """For header values grpcio will not send (tabs, non-ASCII): one raw
        HTTP/2 call per target; the outcome is read from the server's log
        line of the call (found by its x-request-id), and no answer message
        may come back."""
        self.presented.append(header.split(" ", 1)[-1])
        for path, msg in (("/fxb.v1.AuthService/GetMe", b""),
                          ("/fxb.v1.DiagService/ProbeSignedIn", b"")):
            with self.subTest(target=path, reason=reason):
                rid = str(uuid.uuid4())
                res = t.raw_h2_call(self.srv.addr, path, msg, headers=[
                    (b"authorization", header.encode("utf-8")), (b"x-request-id", rid.encode())])
                self.assertEqual(res["messages"], [], "a refused call answered")
                line = self.srv.wait_log(lambda l: l.get("request_id") == rid, timeout=5)
                self.assertIsNotNone(line, "no log line for the raw call")
                self.assertEqual((line["code"], line.get("reason")), (16, reason), line)

    def accept(self, token):
        """token is accepted by every target; returns the probe's answer."""
        self.presented.append(token)
        out = None
        for name, fn in self.targets():
            out = fn(t.bearer(token))
        return out

    # --- building tokens --------------------------------------------------
    def forge(self, header=None, **claims):
        """A token for the real session, signed with the server's key, with
        fresh times; header and claims override (None deletes)."""
        now = int(time.time())
        base = dict(self.claims, iat=now, nbf=now, exp=now + 600, auth_time=now,
                    jti="j" + os.urandom(8).hex())
        return t.forge_token(self.srv, base=base, header=header, **claims)

    def resign(self, header, payload_json):
        """header dict + payload given as raw JSON text, signed with the
        server's key."""
        return t.jwt_encode(header, payload_json.encode(),
                            lambda data: t.es256_sign(self.key_path, data))

    def parts(self, token=None):
        return (token or self.who.access).split(".")

    # --- algorithm ----------------------------------------------------------
    def test_alg_none_is_refused(self):
        h, p, s = self.parts()
        for alg in ("none", "None", "NONE", "", None):
            header = {"alg": alg, "typ": "at+jwt", "kid": self.kid}
            if alg is None:
                del header["alg"]
            hb = t.b64url(json.dumps(header))
            for sig in ("", s):  # empty signature, and the real one
                self.refuse(hb + "." + p + "." + sig, "TOKEN_ALG_NOT_ALLOWED")

    def test_hs256_signed_with_the_public_key_is_refused(self):
        import hashlib
        import hmac
        pem = t.public_pem(self.key_path)
        payload = json.loads(t.b64url_decode(self.parts()[1]))
        for secret in (pem, pem.strip(), pem.replace(b"\n", b"")):
            for alg, digest in (("HS256", hashlib.sha256), ("HS512", hashlib.sha512)):
                tok = t.jwt_encode({"alg": alg, "typ": "at+jwt", "kid": self.kid}, payload,
                                   lambda data: hmac.new(secret, data, digest).digest())
                self.refuse(tok, "TOKEN_ALG_NOT_ALLOWED")

    def test_other_asymmetric_algorithms_are_refused(self):
        for alg in ("ES384", "ES512", "RS256", "PS256", "EdDSA", "es256"):
            self.refuse(self.forge(header={"alg": alg}), "TOKEN_ALG_NOT_ALLOWED")

    # --- signature ----------------------------------------------------------
    def test_payload_changed_after_signing_is_signature_invalid(self):
        h, p, s = self.parts()
        # the attack: raise acr and roles, keep the signature
        raised = dict(self.claims, acr=3, roles=["admin", "citizen"])
        self.refuse(h + "." + t.b64url(json.dumps(raised, separators=(",", ":"))) + "." + s,
                    "TOKEN_SIGNATURE_INVALID")
        # one character in the middle of the payload (base64 stays canonical)
        i = len(p) // 2
        for repl in ("A", "B"):
            if p[i] != repl:
                changed = p[:i] + repl + p[i + 1:]
                self.refuse(h + "." + changed + "." + s, "TOKEN_SIGNATURE_INVALID")
                break
        # header changed after signing (same alg/typ/kid, one extra member)
        h2 = t.b64url(json.dumps({"alg": "ES256", "typ": "at+jwt", "kid": self.kid, "x": 1}))
        self.refuse(h2 + "." + p + "." + s, "TOKEN_SIGNATURE_INVALID")

    def test_flipped_signature_bits_are_signature_invalid(self):
        h, p, s = self.parts()
        raw = t.b64url_decode(s)
        for byte, bit in ((0, 0), (5, 7), (31, 3), (32, 0), (47, 4), (63, 1)):
            flipped = bytearray(raw)
            flipped[byte] ^= 1 << bit
            self.refuse(h + "." + p + "." + t.b64url(bytes(flipped)), "TOKEN_SIGNATURE_INVALID")
        self.refuse(h + "." + p + "." + t.b64url(bytes(64)), "TOKEN_SIGNATURE_INVALID")
        self.refuse(h + "." + p + "." + t.b64url(b"\xff" * 64), "TOKEN_SIGNATURE_INVALID")
        # r and s swapped
        self.refuse(h + "." + p + "." + t.b64url(raw[32:] + raw[:32]), "TOKEN_SIGNATURE_INVALID")
        # wrong lengths: truncated, extended, DER instead of raw r||s
        self.refuse(h + "." + p + "." + t.b64url(raw[:63]), "TOKEN_SIGNATURE_INVALID")
        self.refuse(h + "." + p + "." + t.b64url(raw + b"\x00"), "TOKEN_SIGNATURE_INVALID")
        self.refuse(h + "." + p + "." + t.b64url(b"\x30\x44\x02\x20" + raw[:32] + b"\x02\x20" +
                                                 raw[32:]), "TOKEN_SIGNATURE_INVALID")
        # a signature of another token of the same key
        other = t.sign_in(self.srv, self.who.phone)
        self.refuse(h + "." + p + "." + self.parts(other.access)[2], "TOKEN_SIGNATURE_INVALID")

    def test_non_canonical_signature_encoding_is_malformed(self):
        # 64 bytes are 86 characters: the last one carries 4 unused bits,
        # which must be zero
        h, p, s = self.parts()
        alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
        last = alphabet.index(s[-1])
        self.assertEqual(last & 0xF, 0)
        self.refuse(h + "." + p + "." + s[:-1] + alphabet[last | 1], "TOKEN_MALFORMED")

    # --- key ------------------------------------------------------------------
    def test_unknown_key_id_is_key_unknown(self):
        for kid in ("k20990101T000000Z-00000000", "", "../jwt/" + self.kid,
                    self.kid + ".pem", self.kid.upper(), [self.kid], 7, None):
            with self.subTest(kid=kid):
                self.refuse(self.forge(header={"kid": kid}), "TOKEN_KEY_UNKNOWN")

    def test_token_of_another_servers_key_is_refused(self):
        with t.Server(extra_env=t.AUTH_ENV) as other:
            theirs = t.sign_in(other)
            # its kid is not in this server's keyring
            self.refuse(theirs.access, "TOKEN_KEY_UNKNOWN")
            # and with this server's kid, the signature does not verify
            _, other_key = t.server_key_path(other)
            tok = t.forge_token(self.srv, base=dict(self.claims), key_path=other_key)
            self.refuse(tok, "TOKEN_SIGNATURE_INVALID")

    # --- type and header ------------------------------------------------------
    def test_typ_other_than_at_jwt_is_type_invalid(self):
        for typ in ("JWT", "jwt", "AT+JWT", "at+jwt ", "", 1, None):
            with self.subTest(typ=typ):
                self.refuse(self.forge(header={"typ": typ}), "TOKEN_TYPE_INVALID")

    def test_crit_header_is_malformed(self):
        self.refuse(self.forge(header={"crit": ["exp"]}), "TOKEN_MALFORMED")

    def test_header_with_nul_or_duplicate_members_is_malformed(self):
        # a kid with a NUL would name a loaded key if cut at the NUL
        self.refuse(self.forge(header={"kid": self.kid + "\u0000x"}), "TOKEN_MALFORMED")
        h = '{"alg":"none","alg":"ES256","typ":"at+jwt","kid":"%s"}' % self.kid
        tok = t.b64url(h) + "." + self.parts()[1]
        tok += "." + t.b64url(t.es256_sign(self.key_path, tok.encode()))
        self.refuse(tok, "TOKEN_MALFORMED")

    # --- claims, signed with the real key ---------------------------------------
    def test_expired_token_is_token_expired(self):
        now = int(time.time())
        self.refuse(self.forge(iat=now - 700, nbf=now - 700, exp=now - 100, auth_time=now - 700),
                    "TOKEN_EXPIRED")
        self.refuse(self.forge(iat=now - 600, nbf=now - 600, exp=now - 1, auth_time=now - 600),
                    "TOKEN_EXPIRED")

    def test_a_cached_token_still_expires(self):
        now = int(time.time())
        tok = self.forge(iat=now - 5, nbf=now - 5, exp=now + 2, auth_time=now - 5)
        self.accept(tok)  # verified once, then served from the cache
        self.accept(tok)
        time.sleep(max(0, now + 2 - time.time()) + 0.2)
        self.refuse(tok, "TOKEN_EXPIRED")

    def test_token_used_before_nbf_or_iat_is_not_yet_valid(self):
        now = int(time.time())
        self.refuse(self.forge(nbf=now + 300, exp=now + 800), "TOKEN_NOT_YET_VALID")
        self.refuse(self.forge(iat=now + 300, nbf=now, exp=now + 800, auth_time=now),
                    "TOKEN_NOT_YET_VALID")
        # within the 30 s leeway is fine
        self.accept(self.forge(nbf=now + 10, iat=now + 10, exp=now + 600, auth_time=now))

    def test_wrong_issuer_is_issuer_invalid(self):
        for iss in ("https://evil.example", "https://fxb.xinxiang.gov.cn/", "", None,
                    ["https://fxb.xinxiang.gov.cn"]):
            with self.subTest(iss=iss):
                self.refuse(self.forge(iss=iss), "TOKEN_ISSUER_INVALID")

    def test_wrong_audience_is_audience_invalid(self):
        for aud in ("other-app", "", None, [], ["other-app"], ["fxb-app", 5],
                    ["x%d" % i for i in range(8)] + ["fxb-app"]):
            with self.subTest(aud=aud):
                self.refuse(self.forge(aud=aud), "TOKEN_AUDIENCE_INVALID")
        # an array that contains ours is fine
        self.accept(self.forge(aud=["other-app", "fxb-app"]))

    def test_lifetime_over_15_minutes_is_claims_invalid(self):
        now = int(time.time())
        self.refuse(self.forge(iat=now, nbf=now, exp=now + 3600), "TOKEN_CLAIMS_INVALID")
        self.refuse(self.forge(iat=now, nbf=now, exp=now + 900 + 31), "TOKEN_CLAIMS_INVALID")
        self.accept(self.forge(iat=now, nbf=now, exp=now + 900))

    def test_bad_claim_values_are_claims_invalid(self):
        now = int(time.time())
        cases = [
            {"acr": 7}, {"acr": 0}, {"acr": -1}, {"acr": "2"}, {"acr": 2.0}, {"acr": None},
            {"roles": ["king"]}, {"roles": "admin"}, {"roles": None},
            {"roles": [["admin"]]}, {"roles": ["citizen"] * 9},
            {"sub": None}, {"sub": ""}, {"sub": "a/b"}, {"sub": "x" * 65}, {"sub": 5},
            {"sid": None}, {"sid": "s" * 65}, {"jti": None}, {"jti": "has space"},
            {"auth_time": now + 300}, {"auth_time": 0}, {"auth_time": None},
            {"exp": str(now + 600)}, {"iat": None}, {"nbf": 1.5},
            {"dept": "a/b"}, {"dept": "d" * 33},
            {"act": {"sub": "a", "act": {"sub": "b"}}}, {"act": "agent"},
            {"scope": ""}, {"grant_id": "bad grant"},
        ]
        for c in cases:
            with self.subTest(claims=c):
                self.refuse(self.forge(**c), "TOKEN_CLAIMS_INVALID")

    def test_duplicate_claim_names_are_malformed(self):
        now = int(time.time())
        body = dict(self.claims, iat=now, nbf=now, exp=now + 600, auth_time=now)
        text = json.dumps(body, separators=(",", ":"))
        # a parser that kept the last "acr" would read 3
        dup = text[:-1] + ',"acr":3}'
        self.refuse(self.resign({"alg": "ES256", "typ": "at+jwt", "kid": self.kid}, dup),
                    "TOKEN_MALFORMED")
        self.refuse(self.resign({"alg": "ES256", "typ": "at+jwt", "kid": self.kid}, "[1,2]"),
                    "TOKEN_MALFORMED")
        self.refuse(self.resign({"alg": "ES256", "typ": "at+jwt", "kid": self.kid}, "{"),
                    "TOKEN_MALFORMED")

    def test_delegated_token_is_refused_by_methods_that_are_not_delegable(self):
        self.refuse(self.forge(act={"sub": "agent1"}, grant_id="g1", scope="inbox.read"),
                    "DELEGATION_NOT_ALLOWED", code=grpc.StatusCode.PERMISSION_DENIED)

    def test_delegated_token_naming_no_real_grant_is_refused_by_delegable_ones(self):
        """Signed with the server's own key, but no grant stands behind it:
        the grant is read from the store on every delegated call."""
        probe = self.srv.unary("/fxb.v1.DiagService/ProbeDelegated", t.diag_pb().ProbeRequest,
                               t.diag_pb().ProbeResponse)
        for claims in ({"grant_id": "g1"}, {"grant_id": None}):
            token = self.forge(act={"sub": "agent1"}, scope="inbox.read", **claims)
            self.assertCallFails(
                lambda: probe(t.diag_pb().ProbeRequest(), metadata=[("authorization",
                                                                     "Bearer " + token)]),
                grpc.StatusCode.PERMISSION_DENIED, "GRANT_REVOKED")

    def test_forged_token_for_an_ended_session_is_session_revoked(self):
        victim = t.sign_in(self.srv)
        t.auth_call(self.srv, "SignOut", self.A.SignOutRequest(), token=victim.access)
        now = int(time.time())
        base = dict(t.jwt_decode(victim.access)[1], iat=now, nbf=now, exp=now + 600,
                    jti="j" + os.urandom(8).hex())
        self.refuse(t.forge_token(self.srv, base=base), "SESSION_REVOKED")

    # --- positive control -------------------------------------------------------
    def test_token_signed_with_the_real_key_is_trusted_whatever_it_claims(self):
        tok = self.forge(acr=3, roles=["admin", "citizen"])
        r = self.accept(tok)
        self.assertEqual(r.account_id, self.who.account_id)
        self.assertEqual(r.session_id, self.who.sid)
        self.assertEqual(r.assurance_level, 3)
        self.assertEqual(r.roles, 1 | 4)
        for m in ("ProbeAdmin", "ProbeRealPerson"):
            fn = self.srv.unary("/fxb.v1.DiagService/" + m, self.D.ProbeRequest,
                                self.D.ProbeResponse)
            self.assertEqual(fn(self.D.ProbeRequest(), metadata=t.bearer(tok),
                                timeout=20).assurance_level, 3)
        # the same claims with any other key or no key are refused
        self.refuse(tok.rsplit(".", 1)[0] + "." + self.parts()[2], "TOKEN_SIGNATURE_INVALID")

    # --- shape ------------------------------------------------------------------
    def raw_outcome(self, headers, path="/fxb.v1.DiagService/ProbeSignedIn"):
        """One raw HTTP/2 call with the given authorization header values
        (in order): (answer messages, (code, reason) of its log line)."""
        rid = str(uuid.uuid4())
        hs = [(b"authorization", h.encode("utf-8")) for h in headers]
        res = t.raw_h2_call(self.srv.addr, path, b"", headers=hs + [(b"x-request-id",
                                                                      rid.encode())])
        line = self.srv.wait_log(lambda l: l.get("request_id") == rid, timeout=5)
        self.assertIsNotNone(line, "no log line for the raw call")
        return len(res["messages"]), (line["code"], line.get("reason"))

    def sized_token(self, low, high):
        """A real signed token for the session, padded by an unknown claim
        to a length in low..high."""
        now = int(time.time())
        base = dict(self.claims, iat=now, nbf=now, exp=now + 600, auth_time=now)
        header = {"alg": "ES256", "typ": "at+jwt", "kid": self.kid}
        for pad in range(high):
            c = dict(base, pad="p" * pad)
            n = len(t.jwt_encode(header, c, lambda d: bytes(64)))
            if low <= n <= high:
                return t.jwt_encode(header, c, lambda d: t.es256_sign(self.key_path, d))
        self.fail("no padding gives a token of %d..%d characters" % (low, high))

    def test_token_over_8_kb_is_refused_by_grpc_clients(self):
        # grpcio's encoding of a 9 KB header hits gRPC core's request
        # metadata limit (RESOURCE_EXHAUSTED) before the runtime sees it
        tok = self.forge(pad="p" * 9000)
        self.assertGreater(len(tok), 9 * 1024)
        self.presented.append(tok)
        for path, req, resp in (("/fxb.v1.AuthService/GetMe", self.A.GetMeRequest,
                                 self.A.Account),
                                ("/fxb.v1.DiagService/ProbeSignedIn", self.D.ProbeRequest,
                                 self.D.ProbeResponse)):
            with self.subTest(target=path):
                # a connection of its own: core may close it after this
                ch = self.srv.new_channel(options=[("grpc.use_local_subchannel_pool", 1)])
                try:
                    call = self.srv.unary(path, req, resp, channel=ch)
                    with self.assertRaises(grpc.RpcError) as cm:
                        call(req(), metadata=t.bearer(tok), timeout=20)
                    e = cm.exception
                    got = t.error_reason(e) if e.code() == UNAUTH else (e.code(), None)
                    self.assertIn(got, ((UNAUTH, "TOKEN_MALFORMED"),
                                        (grpc.StatusCode.RESOURCE_EXHAUSTED, None)),
                                  e.details())
                finally:
                    ch.close()
        self.accept(self.who.access)

    def test_token_over_8_kb_is_malformed(self):
        # over raw HTTP/2 the header reaches the runtime: auth/token.h
        # answers TOKEN_MALFORMED for a token over FXB_TOKEN_MAX_LEN (8192)
        for tok in (self.forge(pad="p" * 9000), "A" * 8193, "A" * 12000):
            self.presented.append(tok)
            with self.subTest(length=len(tok)):
                self.assertEqual(self.raw_outcome(["Bearer " + tok]),
                                 (0, (16, "TOKEN_MALFORMED")))

    def test_token_of_the_longest_accepted_length_is_accepted(self):
        # FXB_TOKEN_MAX_LEN = 8192 characters are accepted (auth/token.h)
        tok = self.sized_token(8187, 8192)
        self.presented.append(tok)
        self.assertEqual(self.raw_outcome(["Bearer " + tok]), (1, (0, None)))

    def test_only_the_first_authorization_header_counts(self):
        self.presented.append(self.who.access)
        self.assertEqual(self.raw_outcome(["Bearer abc", "Bearer " + self.who.access]),
                         (0, (16, "TOKEN_MALFORMED")))
        self.assertEqual(self.raw_outcome(["Bearer " + self.who.access, "Bearer abc"]),
                         (1, (0, None)))
        # an over-long first header must not hand the decision to the second
        self.assertEqual(self.raw_outcome(["Bearer " + "A" * 9000,
                                           "Bearer " + self.who.access])[0], 0,
                         "an over-long first authorization header was skipped and the "
                         "second one admitted the call")

    def test_long_token_within_the_transport_limit_is_malformed_or_checked(self):
        # 7 KB of base64url that is no token; and a real signed 7 KB token
        # (an unknown claim pads it) is still a valid token
        self.refuse("A" * 7000, "TOKEN_MALFORMED")
        self.refuse("A" * 3000 + "." + "A" * 3000 + "." + "A" * 86, "TOKEN_MALFORMED")
        self.accept(self.forge(pad="p" * 4800))

    def test_wrong_number_of_parts_is_malformed(self):
        h, p, s = self.parts()
        for tok in (h + "." + p + "." + s + "." + s, h + "." + p + "." + s + ".",
                    h + "." + p, h, h + ".." + s, "." + p + "." + s, "..", "."):
            with self.subTest(tok=tok[:10]):
                self.refuse(tok, "TOKEN_MALFORMED")

    def test_characters_outside_base64url_are_malformed(self):
        h, p, s = self.parts()
        i = len(p) // 2
        for bad in ("+", "/", "=", "!", "*", "~", "\\", "%", " "):
            tok = h + "." + p[:i] + bad + p[i + 1:] + "." + s
            with self.subTest(char=bad):
                self.refuse(tok, "TOKEN_MALFORMED")
        # bytes grpcio does not send: over raw HTTP/2
        for bad in ("é", "\t", "\x7f", "\u00a0"):
            with self.subTest(char=repr(bad)):
                self.refuse_raw("Bearer " + h + "." + p[:i] + bad + p[i + 1:] + "." + s,
                                "TOKEN_MALFORMED")
        # padded base64
        self.refuse(h + "=." + p + "." + s, "TOKEN_MALFORMED")
        # header that is not base64 of a JSON object
        self.refuse(t.b64url("not json") + "." + p + "." + s, "TOKEN_MALFORMED")
        self.refuse(t.b64url("[1]") + "." + p + "." + s, "TOKEN_MALFORMED")
        self.refuse("A." + p + "." + s, "TOKEN_MALFORMED")  # 1 char: not base64

    def test_empty_or_badly_spaced_bearer_is_malformed(self):
        tok = self.who.access
        for header in ("Bearer ", "Bearer", "Bearer  " + tok, "Basic x", "Bearer" + tok,
                       tok, "Bearer " + tok + " ", "Bearer " + tok + " extra"):
            with self.subTest(header=header[:10]):
                self.refuse(tok, "TOKEN_MALFORMED", header=header)
        self.refuse_raw("Bearer\t" + tok, "TOKEN_MALFORMED")
        # no header at all is the one TOKEN_MISSING
        for name, fn in self.targets():
            self.assertCallFails(lambda: fn(None), UNAUTH, "TOKEN_MISSING")


if __name__ == "__main__":
    t.main()
