"""fxb.v1.BenefitService end to end, the policy and account side (the
matching scenarios are test_benefit.py's): every field of a policy draft is
bounded with its own reason; an officer acts only for their own department
on every policy method; rules are compiled at publish and refused with
line, column and the offending token; CheckRule answers every error as a
RuleError; only a DRAFT is updated, at the version read; publish and close
move the published set; the public list shows published policies only,
with filters and tamper-proof page tokens; the confirmation step and
payments (role data-feed or admin only) with their notices and audit
records; citizens' own entitlements with explanations from their own
profile; payout accounts (L3 with a fresh step-up, sealed, shown masked,
never through a proxy); and the person -> account link the identity
service keeps for notices.

The server runs on a private Redis with the matching engine off
(FXB_BENEFIT_ENGINE=0): entitlements the tests need are written the way the
entitlement scripts store them (services/benefit/entitlement.h)."""
import hashlib
import hmac
import os
import time

import grpc

import fxbtest as t
from people import People
from test_proxy import ProxyMixin

SVC = "/fxb.v1.BenefitService/"
INVALID = grpc.StatusCode.INVALID_ARGUMENT
DENIED = grpc.StatusCode.PERMISSION_DENIED
UNAUTH = grpc.StatusCode.UNAUTHENTICATED
NOT_FOUND = grpc.StatusCode.NOT_FOUND
EXISTS = grpc.StatusCode.ALREADY_EXISTS
PRECONDITION = grpc.StatusCode.FAILED_PRECONDITION
ABORTED = grpc.StatusCode.ABORTED

DEPT, OTHER = "xx-civil-affairs", "xx-hrss"
PERSON, ENTERPRISE = 1, 2
PEOPLE_CAT, ENTERPRISE_CAT = 2, 1
CASH, SERVICE = 1, 3
DRAFT, PUBLISHED, CLOSED = 1, 2, 3
MATCHED, CONFIRMED, GRANTED, PAID, DECLINED, ENDED = 1, 2, 3, 4, 5, 6
RULE = 'age >= 60 && district in {"红旗区", "卫滨区"} && !receives_pension'


def B():
    return t.pb("fxb/v1/benefit")


RESPONSES = {
    "ListPolicies": "ListPoliciesResponse", "ListPublishedPolicies": "ListPoliciesResponse",
    "CheckRule": "CheckRuleResponse", "ListPolicyEntitlements": "ListEntitlementsResponse",
    "ListMyEntitlements": "ListEntitlementsResponse", "ConfirmEntitlement": "Entitlement",
    "RejectEntitlement": "Entitlement", "RecordPayment": "Entitlement",
    "GetMyEntitlement": "Entitlement", "DeclineEntitlement": "Entitlement",
    "SetPayoutAccount": "PayoutAccount", "GetPayoutAccount": "PayoutAccount",
}

_seq = [0]


def new_code(prefix="P"):
    _seq[0] += 1
    return "%s-%d-%d" % (prefix, os.getpid() % 10000, _seq[0])


def text(v):
    return v.decode() if isinstance(v, bytes) else v


class BenefitPolicyTest(ProxyMixin, t.TestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.own_redis = t.Redis().start()
        cls.own_redis.migrate()
        env = dict(t.AUTH_ENV)
        env["FXB_BENEFIT_ENGINE"] = "0"
        cls.srv = t.Server(extra_env=env, redis_url=cls.own_redis.url).__enter__()
        cls.people = People(cls.srv)
        r = t.run_admin(["profile", "schema", "import"], redis_url=cls.srv.redis_url,
                        env={"FXB_DATA_DIR": cls.srv.env["FXB_DATA_DIR"]})
        assert r.returncode == 0, r.stderr

        def staff(role, dept=None):
            phone = t.random_phone()
            t.make_staff(cls.srv, phone, role, dept)
            return t.sign_in(cls.srv, phone)
        cls.officer = staff("officer", DEPT)
        cls.other_officer = staff("officer", OTHER)
        cls.root = staff("admin")
        cls.feed = staff("data-feed", "xx-pay")

    @classmethod
    def tearDownClass(cls):
        cls.srv.__exit__(None, None, None)
        cls.own_redis.close()

    # --- helpers --------------------------------------------------------------------------
    def call(self, method, req, who=None, md=None):
        resp = getattr(B(), RESPONSES.get(method, "Policy"))
        if md is None and who is not None:
            md = self._md(who)
        return self.srv.unary(SVC + method, type(req), resp)(req, metadata=md, timeout=20)

    def refused(self, method, req, who, code, reason):
        return self.fails(lambda: self.call(method, req, who), code, reason)

    def draft(self, **over):
        d = dict(code=new_code(), title="高龄津贴", category=PEOPLE_CAT, department=DEPT,
                 subject_type=PERSON, rule=RULE, benefit_kind=CASH, amount_fen=10000,
                 valid_from_ms=0, valid_until_ms=0, budget_fen=0, quota=0,
                 confirmation_required=False, summary="60岁以上老人", legal_basis="新政〔2026〕1号")
        d.update(over)
        return B().PolicyDraft(**d)

    def create(self, who=None, **over):
        return self.call("CreatePolicy", B().CreatePolicyRequest(draft=self.draft(**over)),
                         who or self.officer)

    def publish(self, pid, who=None):
        return self.call("PublishPolicy", B().PublishPolicyRequest(policy_id=pid),
                         who or self.officer)

    def published(self, **over):
        return self.publish(self.create(**over).policy_id)

    def redis(self, *args):
        return t.redis_cmd(self.srv.redis_url, *args)

    def pid_of(self, idn):
        """The person subject the server derives from an ID number."""
        with open(os.path.join(self.srv.env["FXB_DATA_DIR"], "keys", "data", "index.key"),
                  "rb") as f:
            key = f.read()
        return "p" + hmac.new(key, b"id_number\x00" + idn.encode(),
                              hashlib.sha256).hexdigest()[:24]

    def put_entitlement(self, pid, subject, state, reason="-", held="-", round_=1, index=True):
        """An entitlement as the scripts store it, with its counter and the
        subject's list entry."""
        time.sleep(0.005)  # distinct times: lists are newest first
        now = int(time.time() * 1000)
        self.redis("HSET", "{b:%s}:ent" % pid, subject,
                   "%d,%d,%d,%d,%s,%s" % (state, round_, now, now, reason, held))
        counter = {MATCHED: "n_matched", CONFIRMED: "n_confirmed", GRANTED: "n_granted"}
        if state in counter:
            self.redis("HINCRBY", "{b:%s}:policy" % pid, counter[state], 1)
        if state == GRANTED:
            self.redis("HINCRBY", "{b:%s}:policy" % pid, "grants_used", 1)
        if state == MATCHED and reason == "AWAITING_CONFIRMATION":
            self.redis("ZADD", "{b:%s}:queue" % pid, now, subject)
        if index:
            self.redis("ZADD", "{%s:%s}:benefits" % (subject[0], subject), now, pid)

    def stale(self, who, ago_s=400):
        """who's token re-signed with an auth_time ago_s old."""
        claims = t.jwt_decode(who.access)[1]
        now = int(time.time())
        return t.bearer(t.forge_token(self.srv, base=claims, iat=now, nbf=now, exp=now + 300,
                                      auth_time=now - ago_s))

    def audit_actions(self):
        entries = self.redis("XRANGE", "fxb:audit", "-", "+")
        out = []
        for _, kv in entries:
            d = {text(kv[i]): text(kv[i + 1]) for i in range(0, len(kv), 2)}
            out.append(d)
        return out

    def inbox_kinds(self, who, enterprise_id=""):
        return [m.kind for m in self.inbox(who, enterprise_id).messages]

    # --- drafts ---------------------------------------------------------------------------
    def test_every_draft_field_is_bounded(self):
        cases = [
            (dict(code="AB"), "POLICY_CODE_INVALID"),
            (dict(code="lower-case"), "POLICY_CODE_INVALID"),
            (dict(code="A" * 33), "POLICY_CODE_INVALID"),
            (dict(code="SPACE CODE"), "POLICY_CODE_INVALID"),
            (dict(title=""), "TITLE_INVALID"),
            (dict(title="龄" * 101), "TITLE_INVALID"),
            (dict(title="bad\u202etitle"), "TITLE_INVALID"),
            (dict(category=0), "CATEGORY_INVALID"),
            (dict(subject_type=0), "SUBJECT_TYPE_INVALID"),
            (dict(rule=""), "RULE_INVALID"),
            (dict(rule="a" * 2001), "RULE_INVALID"),
            (dict(benefit_kind=0), "BENEFIT_KIND_INVALID"),
            (dict(amount_fen=0), "AMOUNT_INVALID"),
            (dict(amount_fen=-1, benefit_kind=SERVICE), "AMOUNT_INVALID"),
            (dict(amount_fen=10 ** 12 + 1), "AMOUNT_INVALID"),
            (dict(valid_from_ms=2000, valid_until_ms=2000), "VALIDITY_INVALID"),
            (dict(valid_from_ms=-5), "VALIDITY_INVALID"),
            (dict(budget_fen=-1), "BUDGET_INVALID"),
            (dict(budget_fen=10 ** 12 + 1), "BUDGET_INVALID"),
            (dict(quota=-1), "QUOTA_INVALID"),
            (dict(summary="说" * 501), "SUMMARY_INVALID"),
            (dict(legal_basis="法" * 201), "LEGAL_BASIS_INVALID"),
        ]
        for over, reason in cases:
            with self.subTest(reason=reason, field=sorted(over)):
                self.refused("CreatePolicy", B().CreatePolicyRequest(draft=self.draft(**over)),
                             self.officer, INVALID, reason)
        self.refused("CreatePolicy", B().CreatePolicyRequest(), self.officer, INVALID,
                     "DRAFT_REQUIRED")
        self.refused("CreatePolicy",
                     B().CreatePolicyRequest(draft=self.draft(department="Bad_Dept")),
                     self.root, INVALID, "DEPARTMENT_INVALID")
        # the largest values of each bound are accepted
        p = self.create(code="A" * 30 + "-9", title="龄" * 100, summary="说" * 500,
                        legal_basis="法" * 200, amount_fen=10 ** 12, budget_fen=10 ** 12,
                        quota=10 ** 12, rule="a" * 2000, valid_from_ms=1000,
                        valid_until_ms=1001)
        self.assertEqual(p.status, DRAFT)
        p = self.create(benefit_kind=SERVICE, amount_fen=0, code="ABC-" + new_code("Z")[2:])
        self.assertEqual(p.draft.amount_fen, 0)

    def test_a_created_policy_is_a_draft_with_a_unique_code(self):
        d = self.draft(confirmation_required=True, budget_fen=500000, quota=50)
        p = self.call("CreatePolicy", B().CreatePolicyRequest(draft=d), self.officer)
        self.assertRegex(p.policy_id, r"^b[0-9a-f]{16}$")
        self.assertEqual(p.status, DRAFT)
        self.assertEqual(p.version, 1)
        self.assertEqual(p.draft, d)
        self.assertGreater(p.created_at_ms, 0)
        self.assertEqual(len(p.conditions), 0)
        self.refused("CreatePolicy", B().CreatePolicyRequest(draft=d), self.root, EXISTS,
                     "POLICY_CODE_TAKEN")
        got = self.call("GetPolicy", B().GetPolicyRequest(policy_id=p.policy_id), self.root)
        self.assertEqual(got, p)
        self.refused("GetPolicy", B().GetPolicyRequest(policy_id="b0000000000000000"),
                     self.officer, NOT_FOUND, "POLICY_NOT_FOUND")
        self.refused("GetPolicy", B().GetPolicyRequest(policy_id="nope"), self.officer,
                     INVALID, "POLICY_ID_INVALID")

    # --- departments ----------------------------------------------------------------------
    def test_an_officer_of_another_department_is_refused_on_every_policy_method(self):
        p = self.create()
        pub = self.published()
        pid, other = p.policy_id, self.other_officer
        subject = "p" + "0" * 24
        calls = [
            ("CreatePolicy", B().CreatePolicyRequest(draft=self.draft())),
            ("UpdatePolicy", B().UpdatePolicyRequest(policy_id=pid, draft=self.draft())),
            ("PublishPolicy", B().PublishPolicyRequest(policy_id=pid)),
            ("ClosePolicy", B().ClosePolicyRequest(policy_id=pub.policy_id, reason="x")),
            ("GetPolicy", B().GetPolicyRequest(policy_id=pid)),
            ("ListPolicies", B().ListPoliciesRequest(department=DEPT)),
            ("ListPolicyEntitlements", B().ListPolicyEntitlementsRequest(policy_id=pid)),
            ("ConfirmEntitlement", B().ConfirmEntitlementRequest(
                policy_id=pub.policy_id, subject_id=subject)),
            ("RejectEntitlement", B().RejectEntitlementRequest(
                policy_id=pub.policy_id, subject_id=subject, reason="x")),
        ]
        for method, req in calls:
            with self.subTest(method=method):
                self.refused(method, req, other, DENIED, "DEPARTMENT_MISMATCH")
        # an officer without a department filter: refused; an admin: every department
        self.refused("ListPolicies", B().ListPoliciesRequest(), self.officer, DENIED,
                     "DEPARTMENT_MISMATCH")
        # citizens are not staff
        citizen = t.sign_in(self.srv)
        self.refused("CreatePolicy", B().CreatePolicyRequest(draft=self.draft()), citizen,
                     DENIED, "ROLE_REQUIRED")
        # the draft stayed as it was
        got = self.call("GetPolicy", B().GetPolicyRequest(policy_id=pid), self.officer)
        self.assertEqual(got, p)

    # --- rules ----------------------------------------------------------------------------
    def test_publish_refuses_rule_errors_with_line_column_and_token(self):
        cases = [
            ("age >= && x", PERSON, "RULE_SYNTAX", 1, 8, "&&"),
            ("district == 3", PERSON, "RULE_TYPE", 1, 13, "3"),
            ("age >= 60 &&\n  shoe_size > 3", PERSON, "RULE_TYPE", 2, 3, "shoe_size"),
            ("employees > 10", PERSON, "RULE_TYPE", 1, 1, "employees"),
            ("age > 60", ENTERPRISE, "RULE_TYPE", 1, 1, "age"),
        ]
        for rule, subject, reason, line, col, tok in cases:
            with self.subTest(rule=rule):
                cat = PEOPLE_CAT if subject == PERSON else ENTERPRISE_CAT
                p = self.create(rule=rule, subject_type=subject, category=cat)
                err = self.refused("PublishPolicy", B().PublishPolicyRequest(
                    policy_id=p.policy_id), self.officer, INVALID, reason)
                self.assertTrue(err.details().startswith(
                    "line %d, column %d, near '%s': " % (line, col, tok)), err.details())
                got = self.call("GetPolicy", B().GetPolicyRequest(policy_id=p.policy_id),
                                self.officer)
                self.assertEqual(got.status, DRAFT)
                self.assertEqual(got.version, 1)
                # CheckRule says the same as a RuleError
                r = self.call("CheckRule", B().CheckRuleRequest(subject_type=subject, rule=rule),
                              self.officer)
                self.assertFalse(r.ok)
                self.assertEqual((r.error.line, r.error.column, r.error.token, r.error.reason),
                                 (line, col, tok, reason))
                self.assertTrue(r.error.message)
        self.assertNotIn(p.policy_id, [text(x) for x in
                                       self.redis("SMEMBERS", "fxb:benefit:published")])

    def test_check_rule_answers_the_conditions_or_the_error(self):
        r = self.call("CheckRule", B().CheckRuleRequest(subject_type=PERSON, rule=RULE),
                      self.officer)
        self.assertTrue(r.ok)
        self.assertFalse(r.HasField("error"))
        self.assertEqual([(c.index, c.source) for c in r.conditions],
                         [(0, "age >= 60"), (1, 'district in {"红旗区", "卫滨区"}'),
                          (2, "receives_pension")])
        for rule, reason in (("", "RULE_SYNTAX"), ("x" * 2001, "RULE_SYNTAX"),
                             ('size_class == "huge"', "RULE_TYPE")):
            r = self.call("CheckRule", B().CheckRuleRequest(subject_type=ENTERPRISE, rule=rule),
                          self.root)
            self.assertFalse(r.ok)
            self.assertEqual(r.error.reason, reason)
            self.assertEqual(len(r.conditions), 0)
        self.refused("CheckRule", B().CheckRuleRequest(rule=RULE), self.officer, INVALID,
                     "SUBJECT_TYPE_INVALID")

    # --- lifecycle ------------------------------------------------------------------------
    def test_update_replaces_a_draft_at_the_version_read(self):
        p = self.create()
        d = self.draft(code=p.draft.code, title="高龄津贴（二）", amount_fen=20000)
        u = self.call("UpdatePolicy", B().UpdatePolicyRequest(
            policy_id=p.policy_id, expected_version=1, draft=d), self.officer)
        self.assertEqual((u.version, u.draft.title, u.draft.amount_fen),
                         (2, "高龄津贴（二）", 20000))
        self.refused("UpdatePolicy", B().UpdatePolicyRequest(
            policy_id=p.policy_id, expected_version=1, draft=d), self.officer, ABORTED,
            "VERSION_CONFLICT")
        # an empty department keeps it; another is refused
        d.department = ""
        u = self.call("UpdatePolicy", B().UpdatePolicyRequest(policy_id=p.policy_id, draft=d),
                      self.officer)
        self.assertEqual((u.version, u.draft.department), (3, DEPT))
        d.department = OTHER
        self.refused("UpdatePolicy", B().UpdatePolicyRequest(policy_id=p.policy_id, draft=d),
                     self.root, INVALID, "DEPARTMENT_IMMUTABLE")
        # a bad field
        d = self.draft(code=p.draft.code, title="")
        self.refused("UpdatePolicy", B().UpdatePolicyRequest(policy_id=p.policy_id, draft=d),
                     self.officer, INVALID, "TITLE_INVALID")
        # published: no more updates
        pub = self.publish(p.policy_id)
        self.assertEqual((pub.status, pub.version), (PUBLISHED, 4))
        self.refused("UpdatePolicy", B().UpdatePolicyRequest(
            policy_id=p.policy_id, draft=self.draft(code=p.draft.code)), self.officer,
            PRECONDITION, "POLICY_STATE")
        self.refused("PublishPolicy", B().PublishPolicyRequest(policy_id=p.policy_id),
                     self.officer, PRECONDITION, "POLICY_STATE")

    def test_publish_and_close(self):
        rev = int(self.redis("GET", "fxb:benefit:rev") or 0)
        p = self.create()
        pub = self.publish(p.policy_id)
        self.assertEqual(pub.status, PUBLISHED)
        self.assertGreater(pub.published_at_ms, 0)
        self.assertEqual([c.source for c in pub.conditions],
                         ["age >= 60", 'district in {"红旗区", "卫滨区"}', "receives_pension"])
        self.assertIn(p.policy_id.encode(), self.redis("SMEMBERS", "fxb:benefit:published"))
        self.assertEqual(int(self.redis("GET", "fxb:benefit:rev")), rev + 1)
        for reason in ("", "因" * 201):
            self.refused("ClosePolicy", B().ClosePolicyRequest(policy_id=p.policy_id,
                                                               reason=reason),
                         self.officer, INVALID, "CLOSE_REASON_INVALID")
        c = self.call("ClosePolicy", B().ClosePolicyRequest(policy_id=p.policy_id,
                                                            reason="因" * 200), self.officer)
        self.assertEqual((c.status, c.close_reason), (CLOSED, "因" * 200))
        self.assertGreater(c.closed_at_ms, 0)
        self.assertNotIn(p.policy_id.encode(), self.redis("SMEMBERS", "fxb:benefit:published"))
        self.assertEqual(int(self.redis("GET", "fxb:benefit:rev")), rev + 2)
        self.refused("ClosePolicy", B().ClosePolicyRequest(policy_id=p.policy_id, reason="x"),
                     self.officer, PRECONDITION, "POLICY_STATE")
        draft = self.create()
        self.refused("ClosePolicy", B().ClosePolicyRequest(policy_id=draft.policy_id,
                                                           reason="x"),
                     self.officer, PRECONDITION, "POLICY_STATE")

    # --- lists ----------------------------------------------------------------------------
    def walk(self, method, req, who=None, field="policies"):
        """Every page of a list: (items, pages)."""
        items, pages = [], 0
        while True:
            r = self.call(method, req, who)
            items += list(getattr(r, field))
            pages += 1
            self.assertLessEqual(len(getattr(r, field)), req.page_size or 20)
            if not r.next_page_token:
                return items, pages
            req.page_token = r.next_page_token

    def test_list_policies_by_department_and_status_with_pages(self):
        mine = [self.create().policy_id for _ in range(3)]
        pub = self.published().policy_id
        theirs = self.create(who=self.other_officer, department=OTHER).policy_id
        got, pages = self.walk("ListPolicies", B().ListPoliciesRequest(department=DEPT,
                                                                       page_size=2),
                               self.officer)
        ids = [p.policy_id for p in got]
        self.assertGreater(pages, 1)
        self.assertEqual(len(ids), len(set(ids)))
        self.assertTrue(set(mine + [pub]) <= set(ids))
        self.assertNotIn(theirs, ids)
        self.assertTrue(all(p.draft.department == DEPT for p in got))
        # newest first
        created = [p.created_at_ms for p in got]
        self.assertEqual(created, sorted(created, reverse=True))
        got, _ = self.walk("ListPolicies", B().ListPoliciesRequest(
            department=DEPT, status=PUBLISHED, page_size=100), self.officer)
        self.assertIn(pub, [p.policy_id for p in got])
        self.assertTrue(all(p.status == PUBLISHED for p in got))
        # admins: every department
        got, _ = self.walk("ListPolicies", B().ListPoliciesRequest(page_size=100), self.root)
        self.assertTrue({theirs, pub} <= {p.policy_id for p in got})
        # tokens: altered, or carried to other filters, are refused
        r = self.call("ListPolicies", B().ListPoliciesRequest(department=DEPT, page_size=1),
                      self.officer)
        tok = r.next_page_token
        self.assertTrue(tok)
        bad = tok[:-1] + ("0" if tok[-1] != "0" else "1")
        for req in (B().ListPoliciesRequest(department=DEPT, page_token=bad),
                    B().ListPoliciesRequest(department=DEPT, page_token="1." + pub),
                    B().ListPoliciesRequest(department=DEPT, status=DRAFT, page_token=tok)):
            self.refused("ListPolicies", req, self.officer, INVALID, "PAGE_TOKEN_INVALID")
        self.refused("ListPolicies", B().ListPoliciesRequest(department=DEPT, page_size=101),
                     self.officer, INVALID, "PAGE_SIZE_INVALID")
        self.refused("ListPolicies", B().ListPoliciesRequest(department=DEPT, status=9),
                     self.officer, INVALID, "STATUS_INVALID")

    def test_the_published_list_is_public_with_filters(self):
        people = [self.published(category=PEOPLE_CAT).policy_id for _ in range(3)]
        firms = [self.published(category=ENTERPRISE_CAT, subject_type=ENTERPRISE,
                                rule="employees >= 10 && high_tech").policy_id
                 for _ in range(2)]
        draft = self.create().policy_id
        closed = self.published().policy_id
        self.call("ClosePolicy", B().ClosePolicyRequest(policy_id=closed, reason="结束"),
                  self.officer)
        got, pages = self.walk("ListPublishedPolicies",
                               B().ListPublishedPoliciesRequest(page_size=2))
        ids = [p.policy_id for p in got]
        self.assertGreater(pages, 2)
        self.assertEqual(len(ids), len(set(ids)))
        self.assertTrue(set(people + firms) <= set(ids))
        self.assertNotIn(draft, ids)
        self.assertNotIn(closed, ids)
        self.assertTrue(all(p.status == PUBLISHED for p in got))
        at = [p.published_at_ms for p in got]
        self.assertEqual(at, sorted(at, reverse=True))
        one = next(p for p in got if p.policy_id == firms[0])
        self.assertEqual(one.draft.rule, "employees >= 10 && high_tech")
        self.assertEqual([c.source for c in one.conditions], ["employees >= 10", "high_tech"])
        got, _ = self.walk("ListPublishedPolicies", B().ListPublishedPoliciesRequest(
            subject_type=ENTERPRISE, page_size=100))
        self.assertTrue(set(firms) <= {p.policy_id for p in got})
        self.assertTrue(all(p.draft.subject_type == ENTERPRISE for p in got))
        got, _ = self.walk("ListPublishedPolicies", B().ListPublishedPoliciesRequest(
            category=PEOPLE_CAT, subject_type=PERSON))
        self.assertTrue(set(people) <= {p.policy_id for p in got})
        self.assertFalse(set(firms) & {p.policy_id for p in got})
        # a token is bound to its filters and cannot be altered
        r = self.call("ListPublishedPolicies", B().ListPublishedPoliciesRequest(page_size=1))
        tok = r.next_page_token
        for req in (B().ListPublishedPoliciesRequest(page_token=tok[:-2] + "zz"),
                    B().ListPublishedPoliciesRequest(page_token="garbage"),
                    B().ListPublishedPoliciesRequest(category=PEOPLE_CAT, page_token=tok)):
            self.refused("ListPublishedPolicies", req, None, INVALID, "PAGE_TOKEN_INVALID")
        self.refused("ListPublishedPolicies", B().ListPublishedPoliciesRequest(category=9),
                     None, INVALID, "CATEGORY_INVALID")

    # --- the confirmation step, payments --------------------------------------------------
    def test_confirm_and_reject_with_notices_and_audit(self):
        who, idn = self.people.l2_person()
        pid_subject = self.pid_of(idn)
        other = "p" + "1" * 24
        pol = self.published(confirmation_required=True, amount_fen=5000)
        pid = pol.policy_id
        self.put_entitlement(pid, pid_subject, MATCHED, "AWAITING_CONFIRMATION", "TTF")
        self.put_entitlement(pid, other, MATCHED, "AWAITING_CONFIRMATION", "TTF", index=False)
        self.refused("ConfirmEntitlement", B().ConfirmEntitlementRequest(
            policy_id=pid, subject_id="x"), self.officer, INVALID, "SUBJECT_ID_INVALID")
        self.refused("ConfirmEntitlement", B().ConfirmEntitlementRequest(
            policy_id=pid, subject_id=pid_subject, note="注" * 201), self.officer, INVALID,
            "NOTE_INVALID")
        e = self.call("ConfirmEntitlement", B().ConfirmEntitlementRequest(
            policy_id=pid, subject_id=pid_subject, note="核实无误"), self.officer)
        self.assertEqual((e.state, e.subject_id, e.policy_code), (GRANTED, pid_subject,
                                                                  pol.draft.code))
        self.assertEqual(e.disbursement_key, "%s:%s:1" % (pid, pid_subject))
        self.assertEqual(e.amount_fen, 5000)
        t.wait_until(lambda: "benefit.granted" in self.inbox_kinds(who))
        self.refused("ConfirmEntitlement", B().ConfirmEntitlementRequest(
            policy_id=pid, subject_id=pid_subject), self.officer, PRECONDITION,
            "ENTITLEMENT_STATE")
        for reason in ("", "理" * 201):
            self.refused("RejectEntitlement", B().RejectEntitlementRequest(
                policy_id=pid, subject_id=other, reason=reason), self.officer, INVALID,
                "REASON_REQUIRED")
        e = self.call("RejectEntitlement", B().RejectEntitlementRequest(
            policy_id=pid, subject_id=other, reason="复核不符合条件"), self.root)
        self.assertEqual((e.state, e.reason), (ENDED, "REJECTED_BY_DEPARTMENT"))
        got = self.call("GetPolicy", B().GetPolicyRequest(policy_id=pid), self.officer)
        self.assertEqual((got.matched, got.granted, got.ended, got.grants_used),
                         (0, 1, 1, 1))
        actions = {(a["action"], a["subject"]) for a in self.audit_actions()}
        self.assertIn(("benefit.confirm", pid_subject), actions)
        self.assertIn(("benefit.reject", other), actions)
        # the department's list, by state, in pages
        for i in range(5):
            self.put_entitlement(pid, "p%024x" % (0xabc000 + i), MATCHED,
                                 "AWAITING_CONFIRMATION", index=False)
        got, pages = self.walk("ListPolicyEntitlements", B().ListPolicyEntitlementsRequest(
            policy_id=pid, page_size=2), self.officer, field="entitlements")
        self.assertEqual(len(got), 7)
        self.assertEqual(len({e.subject_id for e in got}), 7)
        self.assertGreater(pages, 3)
        got, _ = self.walk("ListPolicyEntitlements", B().ListPolicyEntitlementsRequest(
            policy_id=pid, state=MATCHED, page_size=100), self.officer, field="entitlements")
        self.assertEqual(len(got), 5)
        r = self.call("ListPolicyEntitlements", B().ListPolicyEntitlementsRequest(
            policy_id=pid, page_size=2), self.officer)
        self.refused("ListPolicyEntitlements", B().ListPolicyEntitlementsRequest(
            policy_id=pid, page_size=2, page_token=r.next_page_token[:-1] + "x"),
            self.officer, INVALID, "PAGE_TOKEN_INVALID")
        self.refused("ListPolicyEntitlements", B().ListPolicyEntitlementsRequest(
            policy_id=pid, state=MATCHED, page_token=r.next_page_token),
            self.officer, INVALID, "PAGE_TOKEN_INVALID")

    def test_record_payment_is_for_the_payment_system_only(self):
        who, idn = self.people.l2_person()
        subject = self.pid_of(idn)
        pol = self.published(amount_fen=8800)
        pid = pol.policy_id
        self.put_entitlement(pid, subject, GRANTED)
        key = "%s:%s:1" % (pid, subject)
        req = B().RecordPaymentRequest(disbursement_key=key, payment_reference="PAY-0001")
        for who_ in (who, self.officer):
            self.refused("RecordPayment", req, who_, DENIED, "ROLE_REQUIRED")
        for bad, reason in ((dict(disbursement_key="nope"), "DISBURSEMENT_KEY_INVALID"),
                            (dict(payment_reference=""), "PAYMENT_REFERENCE_INVALID"),
                            (dict(payment_reference="a b"), "PAYMENT_REFERENCE_INVALID"),
                            (dict(payment_reference="x" * 65), "PAYMENT_REFERENCE_INVALID"),
                            (dict(paid_at_ms=-1), "PAID_AT_INVALID"),
                            (dict(paid_at_ms=int(time.time() * 1000) + 3 * 86400000),
                             "PAID_AT_INVALID")):
            r = B().RecordPaymentRequest(disbursement_key=key, payment_reference="PAY-0001")
            for k, v in bad.items():
                setattr(r, k, v)
            self.refused("RecordPayment", r, self.feed, INVALID, reason)
        self.refused("RecordPayment", B().RecordPaymentRequest(
            disbursement_key="%s:%s:2" % (pid, subject), payment_reference="PAY-0001"),
            self.feed, NOT_FOUND, "DISBURSEMENT_NOT_FOUND")
        e = self.call("RecordPayment", req, self.feed)
        self.assertEqual((e.state, e.disbursement_key, e.amount_fen), (PAID, key, 8800))
        t.wait_until(lambda: "benefit.paid" in self.inbox_kinds(who))
        # the same again: the same answer, no second notice
        again = self.call("RecordPayment", req, self.root)
        self.assertEqual((again.state, again.updated_at_ms), (PAID, e.updated_at_ms))
        time.sleep(0.2)
        self.assertEqual(self.inbox_kinds(who).count("benefit.paid"), 1)
        self.refused("RecordPayment", B().RecordPaymentRequest(
            disbursement_key=key, payment_reference="PAY-0002"), self.feed, EXISTS,
            "PAYMENT_CONFLICT")

    # --- citizens -------------------------------------------------------------------------
    def test_citizens_read_their_own_entitlements_with_explanations(self):
        who, idn = self.people.l2_person()
        subject = self.pid_of(idn)
        a = self.published(rule="age >= 18 && !receives_pension")
        b = self.published(amount_fen=300, benefit_kind=SERVICE)
        c = self.published()
        self.put_entitlement(a.policy_id, subject, GRANTED, held="TU")
        self.put_entitlement(b.policy_id, subject, MATCHED, "AWAITING_CONFIRMATION")
        stranger = "p" + "2" * 24
        self.put_entitlement(c.policy_id, stranger, GRANTED)
        r = self.call("ListMyEntitlements", B().ListMyEntitlementsRequest(), who)
        self.assertEqual([e.policy_id for e in r.entitlements], [b.policy_id, a.policy_id])
        self.assertTrue(all(e.subject_id == subject for e in r.entitlements))
        self.assertEqual(r.entitlements[1].policy_title, "高龄津贴")
        self.assertEqual(r.entitlements[1].department, DEPT)
        r = self.call("ListMyEntitlements", B().ListMyEntitlementsRequest(state=GRANTED), who)
        self.assertEqual([e.policy_id for e in r.entitlements], [a.policy_id])
        r = self.call("ListMyEntitlements", B().ListMyEntitlementsRequest(page_size=1), who)
        self.assertEqual(len(r.entitlements), 1)
        r2 = self.call("ListMyEntitlements", B().ListMyEntitlementsRequest(
            page_size=1, page_token=r.next_page_token), who)
        self.assertEqual([e.policy_id for e in r2.entitlements], [a.policy_id])
        other, _ = self.people.l2_person()
        self.refused("ListMyEntitlements", B().ListMyEntitlementsRequest(
            page_token=r.next_page_token), other, INVALID, "PAGE_TOKEN_INVALID")
        # the explanation: the stored truths, one per condition
        e = self.call("GetMyEntitlement", B().GetMyEntitlementRequest(policy_id=a.policy_id),
                      who)
        self.assertEqual([(x.source, x.held) for x in e.explanation],
                         [("age >= 18", "TRUE"), ("receives_pension", "UNKNOWN")])
        # none stored: computed from the subject's own profile now (age from
        # the verified birth date is not in the profile: UNKNOWN)
        e = self.call("GetMyEntitlement", B().GetMyEntitlementRequest(policy_id=b.policy_id),
                      who)
        self.assertEqual(len(e.explanation), 3)
        self.assertTrue(all(x.held in ("TRUE", "FALSE", "UNKNOWN") for x in e.explanation))
        # another subject's entitlement is not the caller's
        self.refused("GetMyEntitlement", B().GetMyEntitlementRequest(policy_id=c.policy_id),
                     who, NOT_FOUND, "ENTITLEMENT_NOT_FOUND")
        # an enterprise the caller does not represent
        self.refused("ListMyEntitlements", B().ListMyEntitlementsRequest(
            enterprise_id="e" + "3" * 24), who, DENIED, "NOT_LEGAL_REPRESENTATIVE")
        self.refused("ListMyEntitlements", B().ListMyEntitlementsRequest(
            enterprise_id="E1"), who, INVALID, "ENTERPRISE_ID_INVALID")
        # decline: reason bounded, then DECLINED
        self.refused("DeclineEntitlement", B().DeclineEntitlementRequest(
            policy_id=b.policy_id, reason="不" * 201), who, INVALID, "REASON_INVALID")
        d = self.call("DeclineEntitlement", B().DeclineEntitlementRequest(
            policy_id=b.policy_id, reason="不需要"), who)
        self.assertEqual((d.state, d.reason), (DECLINED, "DECLINED_BY_SUBJECT"))
        # L1: refused by level
        l1 = t.sign_in(self.srv)
        self.refused("ListMyEntitlements", B().ListMyEntitlementsRequest(), l1, DENIED,
                     "LEVEL_TOO_LOW")

    def test_enterprises_entitlements_for_the_representative_and_the_proxy(self):
        rep, _, ent = self.people.enterprise_with_rep()
        eid = ent.enterprise_id
        pol = self.published(subject_type=ENTERPRISE, category=ENTERPRISE_CAT,
                             rule="employees >= 10")
        self.put_entitlement(pol.policy_id, eid, GRANTED, held="T")
        r = self.call("ListMyEntitlements", B().ListMyEntitlementsRequest(enterprise_id=eid),
                      rep)
        self.assertEqual([e.subject_id for e in r.entitlements], [eid])
        agent, _ = self.people.l2_person()
        _, tok = self.delegated(rep, agent, ["benefits.read"], enterprise_id=eid)
        r = self.call("ListMyEntitlements", B().ListMyEntitlementsRequest(), md=t.bearer(tok))
        self.assertEqual([e.subject_id for e in r.entitlements], [eid])
        e = self.call("GetMyEntitlement", B().GetMyEntitlementRequest(
            policy_id=pol.policy_id, enterprise_id=eid), md=t.bearer(tok))
        self.assertEqual([(x.source, x.held) for x in e.explanation], [("employees >= 10",
                                                                        "TRUE")])
        self.fails(lambda: self.call("ListMyEntitlements", B().ListMyEntitlementsRequest(
            enterprise_id="e" + "4" * 24), md=t.bearer(tok)), DENIED, "OUT_OF_SCOPE")
        # not delegable: declining, payout accounts
        for method, req in (("DeclineEntitlement", B().DeclineEntitlementRequest(
                                policy_id=pol.policy_id)),
                            ("GetPayoutAccount", B().GetPayoutAccountRequest()),
                            ("SetPayoutAccount", B().SetPayoutAccountRequest(
                                bank_name="中国银行", account_number="62220000111122223333",
                                account_name="新乡某公司"))):
            self.fails(lambda: self.call(method, req, md=t.bearer(tok)), DENIED,
                       "DELEGATION_NOT_ALLOWED")

    def defer_list(self, pid, subjects):
        """As a full match's write-out leaves them: the entitlements stored,
        their list entries owed in the policy's unlisted stream."""
        at = self.redis("HGET", "{b:%s}:ent" % pid, subjects[0]).decode().split(",")[2]
        for s in subjects:
            self.redis("ZREM", "{%s:%s}:benefits" % (s[0], s), pid)
        self.redis("XADD", "{b:%s}:unlisted" % pid, "*", "n", str(len(subjects)),
                   "subjects", ",".join(subjects), "at_ms", at)
        self.redis("SADD", "fxb:benefit:unlisted", pid)

    def test_entitlements_whose_list_entries_are_owed_are_listed(self):
        who, idn = self.people.l2_person()
        subject = self.pid_of(idn)
        rep, _, ent = self.people.enterprise_with_rep()
        eid = ent.enterprise_id
        a = self.published()
        b = self.published(amount_fen=300, benefit_kind=SERVICE)
        e = self.published(subject_type=ENTERPRISE, category=ENTERPRISE_CAT,
                           rule="employees >= 10")
        self.put_entitlement(a.policy_id, subject, GRANTED)
        self.put_entitlement(b.policy_id, subject, MATCHED, "AWAITING_CONFIRMATION")
        self.put_entitlement(e.policy_id, eid, GRANTED, held="T")
        other = "p" + "5" * 24
        self.put_entitlement(a.policy_id, other, GRANTED)
        self.defer_list(a.policy_id, [other, subject])
        self.defer_list(e.policy_id, [eid])
        # listed, newest first, with the owed ones where their time puts them
        r = self.call("ListMyEntitlements", B().ListMyEntitlementsRequest(), who)
        self.assertEqual([x.policy_id for x in r.entitlements], [b.policy_id, a.policy_id])
        self.assertEqual(r.entitlements[1].state, GRANTED)
        # written into the caller's own list, and no one else's
        key = "{p:%s}:benefits" % subject
        self.assertIsNotNone(self.redis("ZSCORE", key, a.policy_id))
        self.assertIsNone(self.redis("ZSCORE", "{p:%s}:benefits" % other, a.policy_id))
        # an agent of the enterprise with benefits.read finds its entitlement too
        agent, _ = self.people.l2_person()
        _, tok = self.delegated(rep, agent, ["benefits.read"], enterprise_id=eid)
        r = self.call("ListMyEntitlements", B().ListMyEntitlementsRequest(), md=t.bearer(tok))
        self.assertEqual([x.policy_id for x in r.entitlements], [e.policy_id])
        # once the entries are written and the set is empty, nothing changes
        self.redis("DEL", "{b:%s}:unlisted" % a.policy_id, "{b:%s}:unlisted" % e.policy_id,
                   "fxb:benefit:unlisted")
        r = self.call("ListMyEntitlements", B().ListMyEntitlementsRequest(), who)
        self.assertEqual([x.policy_id for x in r.entitlements], [b.policy_id, a.policy_id])
        # a pending set that is not a set: an internal error, never a wrong list
        self.redis("SET", "fxb:benefit:unlisted", "x")
        try:
            self.fails(lambda: self.call("ListMyEntitlements",
                                         B().ListMyEntitlementsRequest(), who),
                       grpc.StatusCode.INTERNAL, "STORE_ERROR")
        finally:
            self.redis("DEL", "fxb:benefit:unlisted")

    # --- payout accounts ------------------------------------------------------------------
    def test_payout_accounts_need_l3_and_a_fresh_step_up_and_are_shown_masked(self):
        l2, _ = self.people.l2_person()
        req = B().SetPayoutAccountRequest(bank_name="中国工商银行新乡分行",
                                          account_number="6222021234567891234",
                                          account_name="王小明")
        self.refused("SetPayoutAccount", req, l2, DENIED, "LEVEL_TOO_LOW")
        who, idn = self.people.l3_person()
        self.fails(lambda: self.call("SetPayoutAccount", req, md=self.stale(who)), UNAUTH,
                   "STEP_UP_REQUIRED")
        # nothing yet
        got = self.call("GetPayoutAccount", B().GetPayoutAccountRequest(), who)
        self.assertFalse(got.set)
        for over, reason in ((dict(account_number="1234567"), "ACCOUNT_NUMBER_INVALID"),
                             (dict(account_number="1" * 33), "ACCOUNT_NUMBER_INVALID"),
                             (dict(account_number="6222-0212-3456"), "ACCOUNT_NUMBER_INVALID"),
                             (dict(bank_name=""), "BANK_NAME_INVALID"),
                             (dict(bank_name="银" * 61), "BANK_NAME_INVALID"),
                             (dict(account_name=""), "ACCOUNT_NAME_INVALID"),
                             (dict(account_name="名" * 61), "ACCOUNT_NAME_INVALID")):
            r = B().SetPayoutAccountRequest()
            r.CopyFrom(req)
            for k, v in over.items():
                setattr(r, k, v)
            with self.subTest(reason=reason, over=over):
                self.refused("SetPayoutAccount", r, who, INVALID, reason)
        got = self.call("SetPayoutAccount", req, who)
        self.assertTrue(got.set)
        self.assertEqual(got.bank_name, "中国工商银行新乡分行")
        self.assertEqual(got.account_masked, "6222 **** **** 1234")
        self.assertEqual(got.account_name_masked, "王**")
        self.assertGreater(got.updated_at_ms, 0)
        self.assertEqual(self.call("GetPayoutAccount", B().GetPayoutAccountRequest(), who), got)
        # bounds accepted at their ends
        r = B().SetPayoutAccountRequest(bank_name="银" * 60, account_number="1" * 32,
                                        account_name="名" * 60)
        self.assertEqual(self.call("SetPayoutAccount", r, who).account_masked,
                         "1111 **** **** 1111")
        r.account_number = "87654321"
        self.assertEqual(self.call("SetPayoutAccount", r, who).account_masked,
                         "8765 **** **** 4321")
        # stored sealed: no number or name in Redis
        stored = self.redis("HGETALL", "{p:%s}:payout" % self.pid_of(idn))
        fields = {text(stored[i]): stored[i + 1] for i in range(0, len(stored), 2)}
        self.assertEqual(set(fields), {"bank_name", "account_enc", "name_enc", "last4",
                                       "updated_at_ms"})
        self.assertEqual(fields["last4"], b"4321")
        for name in ("account_enc", "name_enc", "updated_at_ms"):
            self.assertNotIn(b"87654321", fields[name])
            self.assertNotIn("名".encode(), fields[name])
        self.assertIn(("benefit.payout_account", self.pid_of(idn)),
                      {(a["action"], a["subject"]) for a in self.audit_actions()})
        # an enterprise's: its legal representative only
        rep, _, ent = self.people.enterprise_with_rep()
        r = B().SetPayoutAccountRequest(enterprise_id=ent.enterprise_id, bank_name="中国银行",
                                        account_number="6216600000000001",
                                        account_name="新乡某科技有限公司")
        self.assertTrue(self.call("SetPayoutAccount", r, rep).set)
        self.refused("SetPayoutAccount", r, who, DENIED, "NOT_LEGAL_REPRESENTATIVE")
        self.refused("GetPayoutAccount", B().GetPayoutAccountRequest(
            enterprise_id=ent.enterprise_id), who, DENIED, "NOT_LEGAL_REPRESENTATIVE")
        got = self.call("GetPayoutAccount", B().GetPayoutAccountRequest(
            enterprise_id=ent.enterprise_id), rep)
        self.assertEqual(got.account_masked, "6216 **** **** 0001")
        # a proxy never reaches it
        agent, _ = self.people.l2_person()
        _, tok = self.delegated(who, agent, ["benefits.read"])
        for method, rq in (("SetPayoutAccount", req),
                           ("GetPayoutAccount", B().GetPayoutAccountRequest())):
            self.fails(lambda: self.call(method, rq, md=t.bearer(tok)), DENIED,
                       "DELEGATION_NOT_ALLOWED")

    # --- the identity link ----------------------------------------------------------------
    def test_the_verified_identity_links_the_person_to_its_account(self):
        idp = t.pb("fxb/v1/identity")
        unbind = self.srv.unary("/fxb.v1.IdentityService/DeleteMyIdentity",
                                idp.DeleteMyIdentityRequest, idp.DeleteMyIdentityResponse)
        who, idn = self.people.l2_person()
        key = "{p:%s}:account" % self.pid_of(idn)
        self.assertEqual(text(self.redis("GET", key)), who.account_id)
        unbind(idp.DeleteMyIdentityRequest(), metadata=who.md(), timeout=20)
        self.assertIsNone(self.redis("GET", key))
        # a link another account holds since is left alone by this one's unbind
        who, idn = self.people.l2_person()
        key = "{p:%s}:account" % self.pid_of(idn)
        self.redis("SET", key, "u-someone-else")
        unbind(idp.DeleteMyIdentityRequest(), metadata=who.md(), timeout=20)
        self.assertEqual(text(self.redis("GET", key)), "u-someone-else")


if __name__ == "__main__":
    t.main()
