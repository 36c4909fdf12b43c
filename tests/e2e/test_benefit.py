"""Zero-application benefits (免申即享, issue 7) end to end: policies
published through BenefitService reach every eligible person and enterprise
without an application, through the matching engine that runs in the
server (services/benefit/engine.h), and the notices reach their inboxes and
live Subscribe streams.

The class runs one fxb-server (its engine the leader) on a PRIVATE Redis
(fxbtest.Redis): the engine indexes every profile of the store, so the
counters and lists asserted here hold only this file's subjects. Tests
share that store, so every test's rule names its own cohort: persons by
`children == N` (N unique per test, 0..20), enterprises by a unique
certification; subjects of other tests are never eligible for another
test's policy. DiagService/SyncBenefitEngine waits until the engine has
applied every profile change and policy change so far (with recheck: one
full re-check pass), so no test sleeps for the engine."""
import hashlib
import hmac
import json
import os
import random
import tempfile
import time
import uuid

import grpc

import fxbtest as t
import people as pp
from test_proxy import ProxyMixin
from test_push import Reader

BEN = "/fxb.v1.BenefitService/"
PROFILE = "/fxb.v1.ProfileService/"
DIAG = "/fxb.v1.DiagService/"

INVALID = grpc.StatusCode.INVALID_ARGUMENT
PRECOND = grpc.StatusCode.FAILED_PRECONDITION
DENIED = grpc.StatusCode.PERMISSION_DENIED
NOT_FOUND = grpc.StatusCode.NOT_FOUND
EXISTS = grpc.StatusCode.ALREADY_EXISTS
ABORTED = grpc.StatusCode.ABORTED

PERSON, ENTERPRISE = 1, 2
# benefit.proto enums
CAT_ENTERPRISE, CAT_PEOPLE = 1, 2
DRAFT, PUBLISHED, CLOSED = 1, 2, 3
CASH, SUBSIDY, SERVICE, VOUCHER = 1, 2, 3, 4
MATCHED, CONFIRMED, GRANTED, PAID, DECLINED, ENDED = 1, 2, 3, 4, 5, 6

CIVIL = "xx-civil-affairs"  # the issuing department of most test policies
HRSS = "xx-hrss"
OLD = "1940-05-01"  # a birth date well over 80

ENV = dict(t.AUTH_ENV, FXB_BENEFIT_ENGINE="1")

METHODS = {
    "CreatePolicy": ("CreatePolicyRequest", "Policy"),
    "UpdatePolicy": ("UpdatePolicyRequest", "Policy"),
    "PublishPolicy": ("PublishPolicyRequest", "Policy"),
    "ClosePolicy": ("ClosePolicyRequest", "Policy"),
    "GetPolicy": ("GetPolicyRequest", "Policy"),
    "ListPolicies": ("ListPoliciesRequest", "ListPoliciesResponse"),
    "CheckRule": ("CheckRuleRequest", "CheckRuleResponse"),
    "ListPolicyEntitlements": ("ListPolicyEntitlementsRequest", "ListEntitlementsResponse"),
    "ConfirmEntitlement": ("ConfirmEntitlementRequest", "Entitlement"),
    "RejectEntitlement": ("RejectEntitlementRequest", "Entitlement"),
    "RecordPayment": ("RecordPaymentRequest", "Entitlement"),
    "ListPublishedPolicies": ("ListPublishedPoliciesRequest", "ListPoliciesResponse"),
    "ListMyEntitlements": ("ListMyEntitlementsRequest", "ListEntitlementsResponse"),
    "GetMyEntitlement": ("GetMyEntitlementRequest", "Entitlement"),
    "DeclineEntitlement": ("DeclineEntitlementRequest", "Entitlement"),
    "SetPayoutAccount": ("SetPayoutAccountRequest", "PayoutAccount"),
    "GetPayoutAccount": ("GetPayoutAccountRequest", "PayoutAccount"),
}


def B():
    return t.pb("fxb/v1/benefit")


def P():
    return t.pb("fxb/v1/profile")


def new_code():
    return "T-" + uuid.uuid4().hex[:12].upper()


def digits(n):
    return "".join(random.SystemRandom().choice("0123456789") for _ in range(n))


class BenefitTest(ProxyMixin, t.TestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.redis = t.Redis().start()
        try:
            cls.srv = t.Server(extra_env=ENV, redis_url=cls.redis.url).__enter__()
        except BaseException:
            cls.redis.close()
            raise
        cls.tmp = tempfile.mkdtemp(prefix="fxb-e2e-benefit.")
        cls.people = pp.People(cls.srv, cls.tmp)
        cls.fed = set()        # every ID number and credit code fed
        cls.secrets = set()    # payout account numbers set
        cls.next_cohort = 1
        r = cls.admin(["profile", "schema", "import"])
        assert r.returncode == 0, r.stdout + r.stderr
        staff = {}
        for name, role, dept in (("root", "admin", None), ("civil", "officer", CIVIL),
                                 ("hrss", "officer", HRSS), ("payer", "data-feed", "xx-finance")):
            phone = t.random_phone()
            t.make_staff(cls.srv, phone, role, dept)
            staff[name] = t.sign_in(cls.srv, phone)
        cls.root, cls.civil, cls.hrss, cls.payer = (staff["root"], staff["civil"],
                                                    staff["hrss"], staff["payer"])

    @classmethod
    def tearDownClass(cls):
        try:
            cls.srv.__exit__(None, None, None)
        finally:
            cls.redis.close()

    # --- plumbing ---------------------------------------------------------------
    @classmethod
    def admin(cls, args, check=False):
        return t.run_admin(args, redis_url=cls.srv.redis_url,
                           env={"FXB_DATA_DIR": cls.srv.env["FXB_DATA_DIR"]}, check=check)

    def ben(self, method, auth, srv=None, **fields):
        """BenefitService.<method>(fields) as auth (SignedIn, token, metadata
        or None)."""
        req_name, resp_name = METHODS[method]
        b = B()
        req = getattr(b, req_name)(**fields)
        fn = (srv or self.srv).unary(BEN + method, type(req), getattr(b, resp_name))
        return fn(req, metadata=self._md(auth), timeout=20)

    def sync(self, srv=None, recheck=False):
        """DiagService/SyncBenefitEngine on srv (the class's server): the
        response, which must come from a ready leader."""
        d = t.diag_pb()
        fn = (srv or self.srv).unary(DIAG + "SyncBenefitEngine", d.SyncBenefitEngineRequest,
                                     d.SyncBenefitEngineResponse)
        r = fn(d.SyncBenefitEngineRequest(recheck=recheck, timeout_ms=30000), timeout=40)
        self.assertTrue(r.leader and r.ready, r)
        return r

    def cohort(self):
        """A `children` value no other test of this class uses."""
        n = type(self).next_cohort
        type(self).next_cohort += 1
        self.assertLessEqual(n, 20, "out of cohorts (children is 0..20)")
        return n

    # --- profiles ----------------------------------------------------------------
    @staticmethod
    def value(name, v):
        m = P()
        if isinstance(v, bool):
            return m.AttributeValue(name=name, bool_value=v)
        if isinstance(v, int):
            return m.AttributeValue(name=name, int_value=v)
        if isinstance(v, (list, tuple, set)):
            return m.AttributeValue(name=name, set_value=m.StringSet(members=list(v)))
        return m.AttributeValue(name=name, text_value=v)

    def person(self, idn, clear=(), **values):
        type(self).fed.add(idn)
        return P().ProfileRecord(subject_type=PERSON, id_number=idn, clear=list(clear),
                                 values=[self.value(k, v) for k, v in values.items()])

    def company(self, code, **values):
        type(self).fed.add(code)
        return P().ProfileRecord(subject_type=ENTERPRISE, credit_code=code,
                                 values=[self.value(k, v) for k, v in values.items()])

    def feed(self, *records, srv=None, who=None):
        """UpsertProfiles as the admin (who: its token re-signed, or None);
        every record must be applied."""
        fn = (srv or self.srv).stream_unary(PROFILE + "UpsertProfiles", P().ProfileRecord,
                                            P().UpsertSummary)
        s = fn(iter(records), metadata=self._md(who or self.root), timeout=30)
        self.assertEqual(s.rejected, 0, [(r.position, r.field, r.reason) for r in s.rejections])
        return s

    def pid(self, idn):
        """The person subject of idn as the server derives it."""
        with open(os.path.join(self.srv.env["FXB_DATA_DIR"], "keys", "data", "index.key"),
                  "rb") as f:
            key = f.read()
        return "p" + hmac.new(key, b"id_number\x00" + idn.encode(),
                              hashlib.sha256).hexdigest()[:24]

    def stored_profile(self, idn):
        h = t.redis_cmd(self.srv.redis_url, "HGETALL", "{p:%s}:profile" % self.pid(idn))
        return dict(zip(h[0::2], h[1::2]))

    def l2(self, **kw):
        return self.people.l2_person(**kw)

    def l3(self, **kw):
        return self.people.l3_person(**kw)

    # --- policies ----------------------------------------------------------------
    def policy(self, rule, who=None, publish=True, sync=True, **draft):
        """CreatePolicy (+ PublishPolicy, + a sync): the Policy."""
        d = dict(code=new_code(), title="测试补贴" + uuid.uuid4().hex[:6], category=CAT_PEOPLE,
                 department=CIVIL, subject_type=PERSON, rule=rule, benefit_kind=SERVICE,
                 summary="八十周岁以上老年人免申即享", legal_basis="新乡市政务服务条例第二十四条")
        d.update(draft)
        who = who or self.root
        p = self.ben("CreatePolicy", who, draft=B().PolicyDraft(**d))
        self.assertEqual((p.status, p.draft.code, p.draft.rule), (DRAFT, d["code"], rule))
        self.assertTrue(p.policy_id)
        if publish:
            p = self.ben("PublishPolicy", who, policy_id=p.policy_id)
            self.assertEqual(p.status, PUBLISHED)
            self.assertGreater(p.published_at_ms, 0)
            if sync:
                self.sync()
        return p

    def get_policy(self, pid, who=None):
        return self.ben("GetPolicy", who or self.root, policy_id=pid)

    def counters(self, pid, who=None):
        p = self.get_policy(pid, who)
        return dict(matched=p.matched, confirmed=p.confirmed, granted=p.granted, paid=p.paid,
                    declined=p.declined, ended=p.ended, grants_used=p.grants_used,
                    budget_used_fen=p.budget_used_fen)

    def ents(self, policy_id, state=0, who=None):
        """ListPolicyEntitlements, every page: {subject_id: Entitlement}."""
        out, token = {}, ""
        for _ in range(100):
            r = self.ben("ListPolicyEntitlements", who or self.root, policy_id=policy_id,
                         state=state, page_size=100, page_token=token)
            for e in r.entitlements:
                self.assertNotIn(e.subject_id, out, "listed twice")
                out[e.subject_id] = e
            token = r.next_page_token
            if not token:
                return out
        self.fail("ListPolicyEntitlements never ended")

    def states(self, policy_id, who=None):
        """{subject: (state, reason)} of a policy."""
        return {s: (e.state, e.reason) for s, e in self.ents(policy_id, who=who).items()}

    def mine(self, auth, enterprise_id="", policy_id=None):
        """ListMyEntitlements (every page), optionally of one policy."""
        out, token = [], ""
        for _ in range(100):
            r = self.ben("ListMyEntitlements", auth, enterprise_id=enterprise_id,
                         page_size=100, page_token=token)
            out.extend(r.entitlements)
            token = r.next_page_token
            if not token:
                break
        return [e for e in out if policy_id is None or e.policy_id == policy_id]

    @staticmethod
    def explained(e):
        return [(c.index, c.source, c.held) for c in e.explanation]

    def benefit_notices(self, auth, policy_id, kind=None, enterprise_id=""):
        return [m for m in self.inbox(auth, enterprise_id).messages
                if m.ref == policy_id and m.kind.startswith("benefit.") and
                (kind is None or m.kind == kind)]

    # === publish ===================================================================
    def test_publish_grants_the_eligible_live_and_in_the_inbox_and_unknown_is_not_true(self):
        n = self.cohort()
        a, a_id = self.l2()   # eligible, subscribed before the publish
        b, b_id = self.l2()   # eligible, reads the inbox afterwards
        c, c_id = self.l2()   # too young
        d, d_id = self.l2()   # pension unknown: !receives_pension is UNKNOWN
        e_id = pp.make_id()   # no app account, wrong district
        self.feed(
            self.person(a_id, children=n, birth_date=OLD, district="红旗区",
                        receives_pension=False),
            self.person(b_id, children=n, birth_date="1938-12-31", district="卫滨区",
                        receives_pension=False),
            self.person(c_id, children=n, birth_date="1970-01-01", district="红旗区",
                        receives_pension=False),
            self.person(d_id, children=n, birth_date=OLD, district="红旗区"),
            self.person(e_id, children=n, birth_date=OLD, district="牧野区",
                        receives_pension=False))
        self.sync()
        live = Reader(self.srv, a.md())
        rule = ('children == %d && age >= 80 && district in {"红旗区", "卫滨区"} && '
                '!receives_pension' % n)
        try:
            p = self.policy(rule, title="高龄老人服务补贴")
            self.assertEqual([(c.index, c.source) for c in p.conditions], [
                (0, "children == %d" % n), (1, "age >= 80"),
                (2, 'district in {"红旗区", "卫滨区"}'), (3, "receives_pension")])
            # a's notice arrives on the live stream
            got = t.wait_until(lambda: [m for m in live.messages
                                        if m.ref == p.policy_id], timeout=10)
            self.assertTrue(got, "no notice on a's stream: %r" % live.messages)
            [m] = got
            self.assertEqual(m.kind, "benefit.granted")
            self.assertIn("高龄老人服务补贴", m.title + m.body)
        finally:
            live.cancel()
        # and in the inbox, for a and for b
        [m2] = self.wait_notices(a, 1, p.policy_id, "benefit.granted")
        self.assertEqual(m2.message_id, m.message_id)
        self.wait_notices(b, 1, p.policy_id, "benefit.granted")
        # the ineligible and the unknown get nothing at all
        for who in (c, d):
            self.assertEqual(self.benefit_notices(who, p.policy_id), [])
            self.assertEqual(self.mine(who, policy_id=p.policy_id), [])
            self.assertCallFails(lambda: self.ben("GetMyEntitlement", who,
                                                  policy_id=p.policy_id),
                                 NOT_FOUND, "ENTITLEMENT_NOT_FOUND")
        # the department's list: exactly a and b
        self.assertEqual(self.states(p.policy_id), {self.pid(a_id): (GRANTED, ""),
                                                    self.pid(b_id): (GRANTED, "")})
        # a sees its own entitlement, explained, and nothing about b
        [e] = self.mine(a)
        self.assertEqual((e.policy_id, e.subject_id, e.state, e.reason, e.round),
                         (p.policy_id, self.pid(a_id), GRANTED, "", 1))
        self.assertEqual((e.policy_code, e.policy_title, e.category, e.benefit_kind,
                          e.department), (p.draft.code, "高龄老人服务补贴", CAT_PEOPLE, SERVICE,
                                          CIVIL))
        # GetMyEntitlement explains it: each condition with its own truth
        # when decided; the last is receives_pension, FALSE for a, which is
        # why !receives_pension held; the list carries the same explanation
        one = self.ben("GetMyEntitlement", a, policy_id=p.policy_id)
        self.assertEqual((one.subject_id, one.state), (e.subject_id, GRANTED))
        self.assertEqual(self.explained(one), [
            (0, "children == %d" % n, "TRUE"), (1, "age >= 80", "TRUE"),
            (2, 'district in {"红旗区", "卫滨区"}', "TRUE"), (3, "receives_pension", "FALSE")])
        self.assertEqual(self.explained(e), self.explained(one))
        [eb] = self.mine(b)
        self.assertEqual(self.explained(eb), self.explained(
            self.ben("GetMyEntitlement", b, policy_id=p.policy_id)))
        self.assertEqual([c.held for c in eb.explanation], ["TRUE", "TRUE", "TRUE", "FALSE"])
        self.assertNotIn(self.pid(b_id), str(self.mine(a)))
        # the counters and the public list
        pol = self.get_policy(p.policy_id)
        self.assertEqual((pol.granted, pol.grants_used, pol.matched, pol.last_match_subjects),
                         (2, 2, 0, 2))
        self.assertGreater(pol.last_match_at_ms, 0)
        pub = self.ben("ListPublishedPolicies", None, category=CAT_PEOPLE, page_size=100)
        self.assertIn(p.policy_id, [x.policy_id for x in pub.policies])

    # === profile changes ===============================================================
    def test_a_profile_change_grants_live_and_ends_a_non_cash_grant_but_not_a_cash_one(self):
        n = self.cohort()
        x, x_id = self.l2()  # becomes eligible
        y, y_id = self.l2()  # becomes ineligible
        self.feed(self.person(x_id, children=n, low_income=False),
                  self.person(y_id, children=n, low_income=True))
        rule = "children == %d && low_income" % n
        svc = self.policy(rule, publish=True, sync=False, title="低保家庭服务")
        cash = self.policy(rule, benefit_kind=CASH, amount_fen=30000, title="低保家庭补贴")
        for p in (svc, cash):
            self.assertEqual(self.states(p.policy_id), {self.pid(y_id): (GRANTED, "")})
        # x becomes eligible: both notices arrive on x's live stream
        live = Reader(self.srv, x.md())
        try:
            self.feed(self.person(x_id, low_income=True))
            self.sync()
            want = {svc.policy_id, cash.policy_id}
            got = t.wait_until(lambda: (lambda r: r if r >= want else None)(
                {m.ref for m in live.messages if m.kind == "benefit.granted"}), timeout=10)
            self.assertEqual(got, want, [(m.kind, m.ref) for m in live.messages])
        finally:
            live.cancel()
        self.assertEqual({e.policy_id: e.state for e in self.mine(x)},
                         {svc.policy_id: GRANTED, cash.policy_id: GRANTED})
        # decided on the change: the list explains with the letters stored then
        for e in self.mine(x):
            self.assertEqual(self.explained(e), [(0, "children == %d" % n, "TRUE"),
                                                 (1, "low_income", "TRUE")])
            self.assertEqual(self.explained(e), self.explained(
                self.ben("GetMyEntitlement", x, policy_id=e.policy_id)))
        # y no longer eligible: the service ends, the cash grant stays
        self.feed(self.person(y_id, low_income=False))
        self.sync()
        mine = {e.policy_id: e for e in self.mine(y)}
        self.assertEqual((mine[svc.policy_id].state, mine[svc.policy_id].reason),
                         (ENDED, "NO_LONGER_ELIGIBLE"))
        self.assertEqual((mine[cash.policy_id].state, mine[cash.policy_id].reason),
                         (GRANTED, ""))
        self.wait_notices(y, 1, svc.policy_id, "benefit.ended")
        self.assertEqual(self.benefit_notices(y, cash.policy_id, "benefit.ended"), [])
        self.assertEqual(self.counters(svc.policy_id)["ended"], 1)
        # eligible again: the ended one reopens as round 2; the cash one is
        # untouched (still round 1, one pay entry)
        self.feed(self.person(y_id, low_income=True))
        self.sync()
        e = self.ben("GetMyEntitlement", y, policy_id=svc.policy_id)
        self.assertEqual((e.state, e.round), (GRANTED, 2))
        e = self.ben("GetMyEntitlement", y, policy_id=cash.policy_id)
        self.assertEqual((e.state, e.round), (GRANTED, 1))
        pays = [f for f in self.payouts(cash.policy_id) if f["subject"] == self.pid(y_id)]
        self.assertEqual([f["op"] for f in pays], ["pay"])

    # === quota and budget ================================================================
    def three_eligible(self):
        n = self.cohort()
        who = [self.l2() for _ in range(3)]
        self.feed(*[self.person(idn, children=n, veteran=True) for _, idn in who])
        return n, {self.pid(idn): w for w, idn in who}

    def test_quota_holds_the_third_until_a_grant_is_declined(self):
        n, by_pid = self.three_eligible()
        p = self.policy("children == %d && veteran" % n, quota=2, title="退役军人服务名额")
        st = self.states(p.policy_id)
        self.assertEqual(sorted(st.values()), [(MATCHED, "QUOTA_EXHAUSTED"), (GRANTED, ""),
                                               (GRANTED, "")])
        self.assertEqual(set(st), set(by_pid))
        c = self.counters(p.policy_id)
        self.assertEqual((c["granted"], c["matched"], c["grants_used"]), (2, 1, 2))
        [held] = [s for s, v in st.items() if v[0] == MATCHED]
        # the held one got no notice yet
        self.assertEqual(self.benefit_notices(by_pid[held], p.policy_id, "benefit.granted"), [])
        # one granted declines: after a re-check the held one is granted
        quitter = next(s for s, v in st.items() if v[0] == GRANTED)
        d = self.ben("DeclineEntitlement", by_pid[quitter], policy_id=p.policy_id,
                     reason="不需要")
        self.assertEqual((d.state, d.reason), (DECLINED, "DECLINED_BY_SUBJECT"))
        self.assertEqual(self.counters(p.policy_id)["grants_used"], 1)
        self.sync(recheck=True)
        st = self.states(p.policy_id)
        self.assertEqual(st[held], (GRANTED, ""))
        self.assertEqual(st[quitter], (DECLINED, "DECLINED_BY_SUBJECT"))
        c = self.counters(p.policy_id)
        self.assertEqual((c["granted"], c["matched"], c["declined"], c["grants_used"]),
                         (2, 0, 1, 2))
        self.wait_notices(by_pid[held], 1, p.policy_id, "benefit.granted")

    def test_budget_holds_the_grant_that_would_exceed_it_until_room_frees(self):
        n, by_pid = self.three_eligible()
        p = self.policy("children == %d && veteran" % n, budget_fen=100000, amount_fen=40000,
                        benefit_kind=VOUCHER, title="退役军人消费券")
        st = self.states(p.policy_id)
        self.assertEqual(sorted(st.values()), [(MATCHED, "BUDGET_EXHAUSTED"), (GRANTED, ""),
                                               (GRANTED, "")])
        c = self.counters(p.policy_id)
        self.assertEqual((c["granted"], c["matched"], c["budget_used_fen"]), (2, 1, 80000))
        [held] = [s for s, v in st.items() if v[0] == MATCHED]
        quitter = next(s for s, v in st.items() if v[0] == GRANTED)
        self.ben("DeclineEntitlement", by_pid[quitter], policy_id=p.policy_id)
        self.assertEqual(self.counters(p.policy_id)["budget_used_fen"], 40000)
        self.sync(recheck=True)
        self.assertEqual(self.states(p.policy_id)[held], (GRANTED, ""))
        c = self.counters(p.policy_id)
        self.assertEqual((c["granted"], c["declined"], c["budget_used_fen"]), (2, 1, 80000))
        e = self.ben("GetMyEntitlement", by_pid[held], policy_id=p.policy_id)
        self.assertEqual((e.state, e.amount_fen), (GRANTED, 40000))

    # === confirmation (二次确认) ========================================================
    def test_confirmation_awaits_the_issuing_department_which_confirms_or_rejects(self):
        n = self.cohort()
        ok, ok_id = self.l2()
        no, no_id = self.l2()
        self.feed(self.person(ok_id, children=n, disability_level=3),
                  self.person(no_id, children=n, disability_level=2))
        live = Reader(self.srv, ok.md())
        try:
            p = self.policy("children == %d && disability_level >= 2" % n, who=self.civil,
                            confirmation_required=True, title="残疾人护理服务")
            self.assertTrue(p.draft.confirmation_required)
            got = t.wait_until(lambda: [m for m in live.messages if m.ref == p.policy_id],
                               timeout=10)
            self.assertEqual([m.kind for m in got or []], ["benefit.awaiting"])
        finally:
            live.cancel()
        ok_pid, no_pid = self.pid(ok_id), self.pid(no_id)
        self.assertEqual(self.states(p.policy_id), {ok_pid: (MATCHED, "AWAITING_CONFIRMATION"),
                                                    no_pid: (MATCHED, "AWAITING_CONFIRMATION")})
        self.assertEqual(self.counters(p.policy_id)["matched"], 2)
        e = self.ben("GetMyEntitlement", ok, policy_id=p.policy_id)
        self.assertEqual((e.state, e.reason), (MATCHED, "AWAITING_CONFIRMATION"))
        # an officer of another department may neither confirm nor list
        self.assertCallFails(lambda: self.ben("ConfirmEntitlement", self.hrss,
                                              policy_id=p.policy_id, subject_id=ok_pid),
                             DENIED, "DEPARTMENT_MISMATCH")
        self.assertCallFails(lambda: self.ents(p.policy_id, who=self.hrss), DENIED,
                             "DEPARTMENT_MISMATCH")
        # nor may the citizen
        self.assertCallFails(lambda: self.ben("ConfirmEntitlement", ok, policy_id=p.policy_id,
                                              subject_id=ok_pid), DENIED, "ROLE_REQUIRED")
        # the issuing department confirms: granted, with a notice
        c = self.ben("ConfirmEntitlement", self.civil, policy_id=p.policy_id, subject_id=ok_pid,
                     note="已核实")
        self.assertEqual((c.subject_id, c.state, c.reason), (ok_pid, GRANTED, ""))
        self.wait_notices(ok, 1, p.policy_id, "benefit.granted")
        self.assertCallFails(lambda: self.ben("ConfirmEntitlement", self.civil,
                                              policy_id=p.policy_id, subject_id=ok_pid),
                             PRECOND, "ENTITLEMENT_STATE")
        # and rejects the other (a reason is required)
        self.assertCallFails(lambda: self.ben("RejectEntitlement", self.civil,
                                              policy_id=p.policy_id, subject_id=no_pid),
                             INVALID)
        r = self.ben("RejectEntitlement", self.civil, policy_id=p.policy_id, subject_id=no_pid,
                     reason="核查后不符合条件")
        self.assertEqual((r.state, r.reason), (ENDED, "REJECTED_BY_DEPARTMENT"))
        self.wait_notices(no, 1, p.policy_id, "benefit.ended")
        self.assertEqual(self.benefit_notices(no, p.policy_id, "benefit.granted"), [])
        self.assertCallFails(lambda: self.ben("ConfirmEntitlement", self.civil,
                                              policy_id=p.policy_id, subject_id=no_pid),
                             PRECOND, "ENTITLEMENT_STATE")
        # a subject without an entitlement
        self.assertCallFails(lambda: self.ben("ConfirmEntitlement", self.civil,
                                              policy_id=p.policy_id,
                                              subject_id=self.pid(pp.make_id())),
                             NOT_FOUND, "ENTITLEMENT_NOT_FOUND")
        # a rejected one stays rejected after a re-check
        self.sync(recheck=True)
        self.assertEqual(self.states(p.policy_id), {ok_pid: (GRANTED, ""),
                                                    no_pid: (ENDED, "REJECTED_BY_DEPARTMENT")})
        c = self.counters(p.policy_id)
        self.assertEqual((c["matched"], c["granted"], c["ended"]), (0, 1, 1))

    # === decline and delegation =========================================================
    def test_decline_is_not_delegable_and_an_agent_with_benefits_read_lists(self):
        n = self.cohort()
        principal, idn = self.l3()
        self.feed(self.person(idn, children=n, employment="unemployed"))
        p = self.policy('children == %d && employment == "unemployed"' % n,
                        title="失业人员培训服务")
        # an agent with benefits.read lists and reads the principal's entitlements
        agent = self.l2()[0]
        _, token = self.delegated(principal, agent, ["benefits.read"])
        [e] = self.mine(token, policy_id=p.policy_id)
        self.assertEqual((e.subject_id, e.state), (self.pid(idn), GRANTED))
        self.assertEqual(self.ben("GetMyEntitlement", token, policy_id=p.policy_id).state,
                         GRANTED)
        # but cannot decline for the principal
        self.assertCallFails(lambda: self.ben("DeclineEntitlement", token,
                                              policy_id=p.policy_id),
                             DENIED, "DELEGATION_NOT_ALLOWED")
        # a grant without benefits.read lists nothing
        other = self.l2()[0]
        _, inbox_only = self.delegated(principal, other, ["inbox.read"])
        self.assertCallFails(lambda: self.mine(inbox_only), DENIED, "OUT_OF_SCOPE")
        # the agent's own list holds nothing of the principal's
        self.assertEqual(self.mine(agent, policy_id=p.policy_id), [])
        # the person declines
        d = self.ben("DeclineEntitlement", principal, policy_id=p.policy_id, reason="已另行办理")
        self.assertEqual((d.state, d.reason), (DECLINED, "DECLINED_BY_SUBJECT"))
        self.assertCallFails(lambda: self.ben("DeclineEntitlement", principal,
                                              policy_id=p.policy_id),
                             PRECOND, "ENTITLEMENT_STATE")
        # final: re-matching never reopens it
        self.feed(self.person(idn, employment="unemployed", veteran=True))
        self.sync(recheck=True)
        e = self.ben("GetMyEntitlement", principal, policy_id=p.policy_id)
        self.assertEqual((e.state, e.reason, e.round), (DECLINED, "DECLINED_BY_SUBJECT", 1))
        c = self.counters(p.policy_id)
        self.assertEqual((c["granted"], c["declined"], c["grants_used"]), (0, 1, 0))
        self.assertEqual([e.state for e in self.mine(token, policy_id=p.policy_id)], [DECLINED])

    # === cash ===========================================================================
    def payouts(self, policy_id):
        """The disbursements of the policy's outbox, one dict per key: an
        entry (批量代发) carries n keys "<pid>:<subject>:<round>" joined by
        ","; each dict gets the entry's op, amount_fen and at_ms, its key
        and the subject the key names."""
        out = []
        for _id, fields in t.redis_cmd(self.srv.redis_url, "XRANGE",
                                       "{b:%s}:payouts" % policy_id, "-", "+") or []:
            f = {k.decode(): v.decode() for k, v in zip(fields[0::2], fields[1::2])}
            self.assertEqual(sorted(f), ["amount_fen", "at_ms", "keys", "n", "op"])
            keys = f["keys"].split(",")
            self.assertEqual(int(f["n"]), len(keys))
            for key in keys:
                pid, subject, rnd = key.split(":")
                self.assertEqual((pid, rnd.isdigit()), (policy_id, True), key)
                out.append(dict(op=f["op"], amount_fen=f["amount_fen"], at_ms=f["at_ms"],
                                key=key, subject=subject))
        return out

    def test_cash_grants_go_to_the_payout_outbox_and_payment_is_recorded_once(self):
        n = self.cohort()
        paid_who, paid_id = self.l3()
        quit_who, quit_id = self.l2()
        # where the money goes: L3 with a step-up, shown masked
        number = "6222" + digits(15)
        holder = pp.make_name()
        self.people.names.add(holder)
        type(self).secrets.add(number)
        self.assertCallFails(lambda: self.ben("SetPayoutAccount", quit_who, bank_name="中国银行",
                                              account_number=number, account_name=holder),
                             DENIED, "LEVEL_TOO_LOW")
        acct = self.ben("SetPayoutAccount", self.fresh(paid_who), bank_name="中国工商银行",
                        account_number=number, account_name=holder)
        got = self.ben("GetPayoutAccount", paid_who)
        for a in (acct, got):
            self.assertTrue(a.set)
            self.assertEqual(a.bank_name, "中国工商银行")
            self.assertTrue(a.account_masked.startswith("6222"), a.account_masked)
            self.assertTrue(a.account_masked.endswith(number[-4:]), a.account_masked)
            self.assertNotIn(number[4:-4], a.account_masked.replace(" ", ""))
            self.assertNotEqual(a.account_name_masked, holder)
        self.feed(self.person(paid_id, children=n, household_type="rural"),
                  self.person(quit_id, children=n, household_type="rural"))
        p = self.policy('children == %d && household_type == "rural"' % n, benefit_kind=CASH,
                        amount_fen=120000, title="农村家庭一次性补贴")
        ents = self.ents(p.policy_id)
        paid_pid, quit_pid = self.pid(paid_id), self.pid(quit_id)
        key = {s: "%s:%s:1" % (p.policy_id, s) for s in (paid_pid, quit_pid)}
        self.assertEqual({s: (e.state, e.amount_fen, e.disbursement_key) for s, e in ents.items()},
                         {s: (GRANTED, 120000, key[s]) for s in key})
        pays = self.payouts(p.policy_id)
        self.assertEqual(sorted((f["key"], f["op"], f["subject"], f["amount_fen"]) for f in pays),
                         sorted((key[s], "pay", s, "120000") for s in key))
        self.assertEqual(self.counters(p.policy_id)["budget_used_fen"], 240000)
        # the payment system records the payment: PAID, with a notice
        ref = "PAY-" + uuid.uuid4().hex[:16]
        at = int(time.time() * 1000)
        r1 = self.ben("RecordPayment", self.payer, disbursement_key=key[paid_pid],
                      payment_reference=ref, paid_at_ms=at)
        self.assertEqual((r1.policy_id, r1.subject_id, r1.state), (p.policy_id, paid_pid, PAID))
        self.wait_notices(paid_who, 1, p.policy_id, "benefit.paid")
        # again: the same answer
        r2 = self.ben("RecordPayment", self.payer, disbursement_key=key[paid_pid],
                      payment_reference=ref, paid_at_ms=at)
        self.assertEqual((r2.state, r2.updated_at_ms), (PAID, r1.updated_at_ms))
        self.assertEqual(len(self.benefit_notices(paid_who, p.policy_id, "benefit.paid")), 1)
        # another reference for a paid key is a conflict
        self.assertCallFails(lambda: self.ben("RecordPayment", self.payer,
                                              disbursement_key=key[paid_pid],
                                              payment_reference="PAY-OTHER", paid_at_ms=at),
                             EXISTS, "PAYMENT_CONFLICT")
        self.assertCallFails(lambda: self.ben("RecordPayment", self.payer,
                                              disbursement_key="%s:%s:1" % (
                                                  p.policy_id, self.pid(pp.make_id())),
                                              payment_reference=ref, paid_at_ms=at),
                             NOT_FOUND, "DISBURSEMENT_NOT_FOUND")
        self.assertCallFails(lambda: self.ben("RecordPayment", paid_who,
                                              disbursement_key=key[paid_pid],
                                              payment_reference=ref, paid_at_ms=at),
                             DENIED, "ROLE_REQUIRED")
        # paid is final
        self.assertCallFails(lambda: self.ben("DeclineEntitlement", paid_who,
                                              policy_id=p.policy_id),
                             PRECOND, "ENTITLEMENT_STATE")
        # a granted cash benefit declined before payment: a cancel entry
        d = self.ben("DeclineEntitlement", quit_who, policy_id=p.policy_id)
        self.assertEqual(d.state, DECLINED)
        cancels = [f for f in self.payouts(p.policy_id) if f["op"] == "cancel"]
        self.assertEqual([(f["key"], f["subject"]) for f in cancels], [(key[quit_pid], quit_pid)])
        self.assertCallFails(lambda: self.ben("RecordPayment", self.payer,
                                              disbursement_key=key[quit_pid],
                                              payment_reference=ref + "-2", paid_at_ms=at),
                             PRECOND, "ENTITLEMENT_STATE")
        c = self.counters(p.policy_id)
        self.assertEqual((c["paid"], c["granted"], c["declined"], c["grants_used"],
                          c["budget_used_fen"]), (1, 0, 1, 1, 120000))

    # === enterprises (惠企) ==============================================================
    def test_an_enterprise_policy_reaches_the_representative_and_staff_with_the_scope(self):
        tag = "T" + uuid.uuid4().hex[:12]
        rep, _, ent = self.people.enterprise_with_rep()
        small = pp.make_uscc()  # too few employees
        self.feed(self.company(ent.credit_code, certifications=[tag, "ISO9001"], employees=12),
                  self.company(small, certifications=[tag], employees=5))
        live = Reader(self.srv, rep.md(), enterprise_id=ent.enterprise_id)
        try:
            p = self.policy('certifications contains "%s" && employees >= 10' % tag,
                            subject_type=ENTERPRISE, category=CAT_ENTERPRISE,
                            department="xx-market", benefit_kind=SUBSIDY, amount_fen=500000,
                            title="小微企业稳岗补贴")
            got = t.wait_until(lambda: [m for m in live.messages if m.ref == p.policy_id],
                               timeout=10)
            self.assertEqual([m.kind for m in got or []], ["benefit.granted"])
        finally:
            live.cancel()
        self.assertEqual(self.states(p.policy_id), {ent.enterprise_id: (GRANTED, "")})
        # the legal representative sees it for the enterprise, not as a person
        [e] = self.mine(rep, enterprise_id=ent.enterprise_id)
        self.assertEqual((e.policy_id, e.subject_id, e.state, e.amount_fen),
                         (p.policy_id, ent.enterprise_id, GRANTED, 500000))
        one = self.ben("GetMyEntitlement", rep, policy_id=p.policy_id,
                       enterprise_id=ent.enterprise_id)
        self.assertEqual(self.explained(one), [
            (0, 'certifications contains "%s"' % tag, "TRUE"), (1, "employees >= 10", "TRUE")])
        self.assertEqual(self.mine(rep, policy_id=p.policy_id), [])
        self.assertEqual(self.benefit_notices(rep, p.policy_id), [])
        # staff with benefits.read + inbox.read of the enterprise see it too
        staff = self.l2()[0]
        _, token = self.delegated(rep, staff, ["benefits.read", "inbox.read"],
                                  enterprise_id=ent.enterprise_id)
        self.assertEqual([(x.policy_id, x.subject_id) for x in self.mine(token)],
                         [(p.policy_id, ent.enterprise_id)])
        self.assertEqual([m.kind for m in self.benefit_notices(token, p.policy_id)],
                         ["benefit.granted"])
        # not with their own token, nor anyone else
        self.assertCallFails(lambda: self.mine(staff, enterprise_id=ent.enterprise_id), DENIED,
                             "NOT_LEGAL_REPRESENTATIVE")
        stranger = self.l3()[0]
        self.assertCallFails(lambda: self.mine(stranger, enterprise_id=ent.enterprise_id),
                             DENIED, "NOT_LEGAL_REPRESENTATIVE")
        self.assertCallFails(lambda: self.ben("DeclineEntitlement", token,
                                              policy_id=p.policy_id),
                             DENIED, "DELEGATION_NOT_ALLOWED")

    # === rule errors ====================================================================
    def test_rule_errors_are_refused_at_publish_with_line_and_column(self):
        cases = [
            ("children == 0 &&\n  age >= && veteran", "RULE_SYNTAX", 2, 10, "&&"),
            ('age >= "八十"', "RULE_TYPE", 1, 8, '"八十"'),
            ("shoe_size >= 42", "RULE_TYPE", 1, 1, "shoe_size"),
            ('veteran && district == "北京"', "RULE_TYPE", 1, 24, '"北京"'),
            ("veteran && employees > 5", "RULE_TYPE", 1, 12, "employees"),
        ]
        for rule, reason, line, col, token in cases:
            with self.subTest(rule=rule):
                p = self.policy(rule, publish=False)
                err = self.assertCallFails(lambda: self.ben("PublishPolicy", self.root,
                                                            policy_id=p.policy_id),
                                           INVALID, reason)
                self.assertIn("line %d, column %d" % (line, col), err.details())
                self.assertIn(token, err.details())
                self.assertEqual(self.get_policy(p.policy_id).status, DRAFT)
                chk = self.ben("CheckRule", self.root, subject_type=PERSON, rule=rule)
                self.assertFalse(chk.ok)
                self.assertEqual((chk.error.line, chk.error.column, chk.error.token,
                                  chk.error.reason), (line, col, token, reason))
                self.assertTrue(chk.error.message)
        # fixed in the draft (version checked), then published
        p = self.policy(cases[0][0], publish=False)
        fixed = B().PolicyDraft()
        fixed.CopyFrom(p.draft)
        fixed.rule = "children == 0 &&\n  age >= 80 && veteran"
        self.assertCallFails(lambda: self.ben("UpdatePolicy", self.root, policy_id=p.policy_id,
                                              expected_version=p.version + 7, draft=fixed),
                             ABORTED, "VERSION_CONFLICT")
        u = self.ben("UpdatePolicy", self.root, policy_id=p.policy_id,
                     expected_version=p.version, draft=fixed)
        self.assertEqual((u.status, u.draft.rule), (DRAFT, fixed.rule))
        chk = self.ben("CheckRule", self.root, subject_type=PERSON, rule=fixed.rule)
        self.assertTrue(chk.ok)
        self.assertEqual([c.source for c in chk.conditions],
                         ["children == 0", "age >= 80", "veteran"])
        pub = self.ben("PublishPolicy", self.root, policy_id=p.policy_id)
        self.assertEqual(pub.status, PUBLISHED)
        self.assertEqual([c.source for c in pub.conditions],
                         ["children == 0", "age >= 80", "veteran"])
        # published: no more edits (children == 0 is no test's cohort)
        self.assertCallFails(lambda: self.ben("UpdatePolicy", self.root, policy_id=p.policy_id,
                                              draft=fixed), PRECOND, "POLICY_STATE")
        self.ben("ClosePolicy", self.root, policy_id=p.policy_id, reason="测试结束")

    # === import with bad rows ============================================================
    def test_import_with_bad_rows_applies_the_good_ones_and_the_engine_grants_them(self):
        n = self.cohort()
        p = self.policy("children == %d && low_income" % n, title="低收入家庭服务")
        good1, bad_date, bad_attr, bad_id, good_no, good2 = [pp.make_id() for _ in range(6)]
        # bad_date is known and not eligible; its bad row would make it eligible
        self.feed(self.person(bad_date, children=n, low_income=False))
        before = self.stored_profile(bad_date)
        type(self).fed.update((good1, bad_attr, bad_id, good_no, good2))

        def row(idn, **values):
            return json.dumps({"subject_type": "person", "id_number": idn, "values": values},
                              ensure_ascii=False)
        lines = [
            row(good1, children=n, low_income=True),
            row(bad_date, children=n, low_income=True, birth_date="1950-02-30"),
            row(bad_attr, children=n, low_income=True, shoe_size=42),
            row(pp.bad_check(bad_id), children=n, low_income=True),
            row(good_no, children=n, low_income=False),
            row(good2, children=n, low_income=True),
        ]
        path = os.path.join(self.tmp, "feed-%s.ndjson" % uuid.uuid4().hex[:8])
        with open(path, "w", encoding="utf-8") as f:
            f.write("".join(line + "\n" for line in lines))
        r = self.admin(["profile", "import", path])
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        out = r.stdout.splitlines()
        self.assertEqual(out[0], "profile import: 6 rows, 3 applied, 0 unchanged, 3 rejected")
        self.assertEqual([line.split(" (")[0] for line in out[1:]], [
            "  row 2: birth_date: DATE_INVALID",
            "  row 3: shoe_size: ATTRIBUTE_UNKNOWN",
            "  row 4: id_number: ID_NUMBER_CHECK",
        ])
        for idn in (good1, bad_date, bad_attr, bad_id, good_no, good2):
            self.assertNotIn(idn[:17], r.stdout + r.stderr)
        # the bad rows changed nothing
        self.assertEqual(self.stored_profile(bad_date), before)
        self.assertEqual(self.stored_profile(bad_attr), {})
        self.assertEqual(self.stored_profile(bad_id), {})
        self.sync()
        self.assertEqual(self.states(p.policy_id), {self.pid(good1): (GRANTED, ""),
                                                    self.pid(good2): (GRANTED, "")})
        self.assertEqual(self.get_policy(p.policy_id).granted, 2)

    # === several servers ==============================================================
    def test_one_leader_engine_and_its_notice_reaches_a_subscriber_on_another_server(self):
        n = self.cohort()
        who, idn = self.l2()
        self.feed(self.person(idn, children=n, veteran=False))
        p = self.policy("children == %d && veteran" % n, title="退役军人优待")
        env = dict(ENV, FXB_DATA_DIR=self.srv.env["FXB_DATA_DIR"])
        with t.Server(extra_env=env, redis_url=self.redis.url, provision_keys=False) as other:
            # one leader: this class's server; the other's engine waits
            self.assertCallFails(lambda: self.sync(srv=other), PRECOND, "ENGINE_NOT_LEADER")
            self.assertTrue(self.sync().leader)
            self.assertIsNotNone(t.redis_cmd(self.redis.url, "GET",
                                             "fxb:benefit:engine:leader"))
            live = Reader(other, who.md())
            try:
                # the profile change goes in through the other server too
                self.feed(self.person(idn, veteran=True), srv=other)
                self.sync()
                got = t.wait_until(lambda: [m for m in live.messages
                                            if m.ref == p.policy_id], timeout=10)
                self.assertEqual([m.kind for m in got or []], ["benefit.granted"])
            finally:
                live.cancel()
            e = self.ben("GetMyEntitlement", who, srv=other, policy_id=p.policy_id)
            self.assertEqual(e.state, GRANTED)
            self.assertCallFails(lambda: self.sync(srv=other), PRECOND, "ENGINE_NOT_LEADER")
            log = other.log()
            self.assertNotIn(idn[:17], log)

    # === validity window =================================================================
    # The server's clock moves (DiagService/SetClockOffset; always reset);
    # calls made while it is moved carry tokens re-signed by it.
    def test_past_valid_until_what_was_not_granted_expires_and_nothing_new_is_granted(self):
        n = self.cohort()
        held_who, held_id = self.l2()  # awaits confirmation: ends at expiry, told
        kept_id, late_id = pp.make_id(), pp.make_id()
        self.feed(self.person(held_id, children=n, veteran=True),
                  self.person(kept_id, children=n, veteran=True))
        day = 24 * 3600 * 1000
        self.addCleanup(self.reset_clock)
        now = self.clock(0)
        p = self.policy("children == %d && veteran" % n, who=self.civil,
                        confirmation_required=True, valid_from_ms=now - day,
                        valid_until_ms=now + day, title="退役军人限时服务")
        held, kept = self.pid(held_id), self.pid(kept_id)
        self.assertEqual(self.states(p.policy_id), {held: (MATCHED, "AWAITING_CONFIRMATION"),
                                                    kept: (MATCHED, "AWAITING_CONFIRMATION")})
        self.ben("ConfirmEntitlement", self.civil, policy_id=p.policy_id, subject_id=kept)
        try:
            # two days later the window has closed: the re-check ends what
            # was not granted, the grant stays
            self.clock(2 * day)
            root, civil, held_now = (self.at_server_time(w)
                                     for w in (self.root, self.civil, held_who))
            self.sync(recheck=True)
            self.assertEqual(self.states(p.policy_id, who=root),
                             {held: (ENDED, "POLICY_EXPIRED"), kept: (GRANTED, "")})
            self.wait_notices(held_now, 1, p.policy_id, "benefit.ended")
            e = self.ben("GetMyEntitlement", held_now, policy_id=p.policy_id)
            self.assertEqual((e.state, e.reason), (ENDED, "POLICY_EXPIRED"))
            c = self.counters(p.policy_id, who=root)
            self.assertEqual((c["matched"], c["granted"], c["ended"]), (0, 1, 1))
            # nothing new: not on a profile change, not on a re-check, and
            # the department can no longer confirm
            self.feed(self.person(late_id, children=n, veteran=True), who=root)
            self.sync(recheck=True)
            self.assertEqual(set(self.states(p.policy_id, who=root)), {held, kept})
            self.assertCallFails(lambda: self.ben("ConfirmEntitlement", civil,
                                                  policy_id=p.policy_id, subject_id=held),
                                 PRECOND)
        finally:
            self.reset_clock()

    def test_before_valid_from_nothing_is_granted_until_a_recheck_inside_the_window(self):
        n = self.cohort()
        who, idn = self.l2()
        self.feed(self.person(idn, children=n, low_income=True))
        day = 24 * 3600 * 1000
        self.addCleanup(self.reset_clock)
        now = self.clock(0)
        p = self.policy("children == %d && low_income" % n, valid_from_ms=now + day,
                        valid_until_ms=now + 10 * day, title="明日起低收入家庭服务")
        self.assertEqual(self.states(p.policy_id), {})
        # neither a change nor a re-check before the window grants
        self.feed(self.person(idn, veteran=True))
        self.sync(recheck=True)
        self.assertEqual(self.states(p.policy_id), {})
        self.assertEqual(self.benefit_notices(who, p.policy_id), [])
        try:
            # the window opens: the next re-check grants, with its notice
            self.clock(day + 60 * 1000)
            root, who_now = self.at_server_time(self.root), self.at_server_time(who)
            self.sync(recheck=True)
            self.assertEqual(self.states(p.policy_id, who=root), {self.pid(idn): (GRANTED, "")})
            self.wait_notices(who_now, 1, p.policy_id, "benefit.granted")
        finally:
            self.reset_clock()

    # === close ===========================================================================
    def test_close_ends_what_awaits_confirmation_and_keeps_what_was_granted(self):
        n = self.cohort()
        waiting_who, waiting_id = self.l2()  # has the app: told of the end
        granted_id, late_id = pp.make_id(), pp.make_id()
        self.feed(self.person(waiting_id, children=n, household_type="urban"),
                  self.person(granted_id, children=n, household_type="urban"))
        p = self.policy('children == %d && household_type == "urban"' % n, who=self.civil,
                        confirmation_required=True, title="城镇家庭服务")
        waiting, granted = self.pid(waiting_id), self.pid(granted_id)
        self.wait_notices(waiting_who, 1, p.policy_id, "benefit.awaiting")
        self.assertEqual(self.ben("ConfirmEntitlement", self.civil, policy_id=p.policy_id,
                                  subject_id=granted).state, GRANTED)
        self.assertCallFails(lambda: self.ben("ClosePolicy", self.civil, policy_id=p.policy_id),
                             INVALID)
        self.assertCallFails(lambda: self.ben("ClosePolicy", self.hrss, policy_id=p.policy_id,
                                              reason="资金用完"), DENIED, "DEPARTMENT_MISMATCH")
        c = self.ben("ClosePolicy", self.civil, policy_id=p.policy_id, reason="年度资金用完")
        self.assertEqual((c.status, c.close_reason), (CLOSED, "年度资金用完"))
        self.assertGreater(c.closed_at_ms, 0)
        self.sync()
        self.assertEqual(self.states(p.policy_id), {waiting: (ENDED, "POLICY_CLOSED"),
                                                    granted: (GRANTED, "")})
        cn = self.counters(p.policy_id)
        self.assertEqual((cn["matched"], cn["granted"], cn["ended"]), (0, 1, 1))
        # the engine's to-do entry of the close is done
        self.assertEqual(t.redis_cmd(self.srv.redis_url, "SISMEMBER", "fxb:benefit:closing",
                                     p.policy_id), 0)
        # the awaiting subject is told, once, and sees why in its own list
        self.wait_notices(waiting_who, 1, p.policy_id, "benefit.ended")
        self.assertEqual([m.kind for m in self.benefit_notices(waiting_who, p.policy_id)
                          if m.kind != "benefit.awaiting"], ["benefit.ended"])
        [mine] = self.mine(waiting_who, policy_id=p.policy_id)
        self.assertEqual((mine.state, mine.reason), (ENDED, "POLICY_CLOSED"))
        self.assertCallFails(lambda: self.ben("ClosePolicy", self.civil, policy_id=p.policy_id,
                                              reason="again"), PRECOND, "POLICY_STATE")
        self.assertCallFails(lambda: self.ben("ConfirmEntitlement", self.civil,
                                              policy_id=p.policy_id, subject_id=waiting),
                             PRECOND, "ENTITLEMENT_STATE")
        # no new matches after the close, not even after a re-check
        self.feed(self.person(late_id, children=n, household_type="urban"))
        self.sync(recheck=True)
        self.assertNotIn(self.pid(late_id), self.states(p.policy_id))
        self.assertEqual(self.states(p.policy_id)[waiting], (ENDED, "POLICY_CLOSED"))
        pub = self.ben("ListPublishedPolicies", None, page_size=100)
        self.assertNotIn(p.policy_id, [x.policy_id for x in pub.policies])

    # === last: privacy ===================================================================
    def test_zz_no_id_number_name_or_account_number_in_redis_or_the_log(self):
        ids = {x for x in self.fed | self.people.ids if len(x) == 18 and x[:17].isdigit()}
        codes = self.fed - ids
        names = set(self.people.names)
        self.assertTrue(ids and codes and names and self.secrets, "run the whole class")
        dump = t.redis_dump(self.srv.redis_url)
        self.assertTrue(any(k.endswith(b":payouts") for k, _ in dump))
        for key, values in dump:
            blob = key + b"\x00" + b"\x00".join(values)
            for idn in ids:
                self.assertNotIn(idn[:17].encode(), blob, "an ID number in %r" % key)
            for name in names:
                self.assertNotIn(name.encode(), blob, "a name in %r" % key)
            for number in self.secrets:
                self.assertNotIn(number.encode(), blob, "an account number in %r" % key)
                self.assertNotIn(number[4:-4].encode(), blob, "an account number in %r" % key)
            # the enterprise service keeps a bound enterprise's code (its own
            # business); profiles, policies and entitlements never do
            if key.startswith(b"{b:") or key.startswith(b"fxb:benefit") or \
                    key.endswith(b":profile") or key.endswith(b":benefits"):
                for code in codes:
                    self.assertNotIn(code.encode(), blob, "a credit code in %r" % key)
        log = self.srv.log()
        for s in ids:
            self.assertNotIn(s[:17], log)
        for s in codes:
            self.assertNotIn(s, log)
        for s in names | self.secrets:
            self.assertNotIn(s, log)


if __name__ == "__main__":
    t.main()
