"""fxb.v1.FilingService end to end (regulation art. 17–22): drafts for
catalogue items and bundles, materials from the wallet, the submit check
that lists every problem at once and never asks for anything outside the
guide, licences attached by the server, 容缺 acceptance and its deadline,
告知承诺 approval and credit exclusion, immediate items, withdrawals, the
sweeper, proxies within and outside their grant's scope.

One server for the class; the catalogue and the calendar are imported in
setUpClass (idempotent on the shared Redis); every test makes its own
people. Tests that move the server's clock put it back in tearDown."""
import secrets
import time
import uuid

import grpc

import fxbtest as t
from people import People
from test_proxy import ProxyMixin

SVC = "/fxb.v1.FilingService/"
MAT = "/fxb.v1.MaterialService/"
CAT = "/fxb.v1.CatalogService/"
DIAG = "/fxb.v1.DiagService/"

INVALID = grpc.StatusCode.INVALID_ARGUMENT
NOT_FOUND = grpc.StatusCode.NOT_FOUND
PRECOND = grpc.StatusCode.FAILED_PRECONDITION
DENIED = grpc.StatusCode.PERMISSION_DENIED

DAY = 24 * 3600 * 1000

PDF = b"%PDF-1.7\n" + b"1 0 obj << /Type /Catalog >> endobj\n" * 10 + b"%%EOF\n"
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(range(256)) + b"\xff\xd9"

# Seed items (data/catalog/README.md)
TOLERATED = "XX-GJJ-0001"  # M01 required, M02 tolerable (5 days), M03 optional (max 1)
COMMIT = "XX-SC-0001"      # 告知承诺: M01 id_card, M02 real_estate_certificate, M03 upload
IMMEDIATE = "XX-GA-0005"   # 即办件, result no_criminal_record_certificate; M01 id_card
PLAIN = "XX-YB-0001"       # M01 household_register required; M02, M03 optional
BUNDLE = "B-NEWBORN"


def f_pb():
    return t.pb("fxb/v1/filing")


def m_pb():
    return t.pb("fxb/v1/material")


def c_pb():
    return t.pb("fxb/v1/catalog")


class FilingTest(ProxyMixin, t.TestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        t.run_admin(["catalog", "import"], check=True)
        t.run_admin(["calendar", "import"], check=True)
        cls.srv = t.Server(extra_env=dict(t.AUTH_ENV)).__enter__()
        cls.people = People(cls.srv)

    @classmethod
    def tearDownClass(cls):
        cls.srv.__exit__(None, None, None)

    def tearDown(self):
        self.reset_clock()

    # --- calls ------------------------------------------------------------------
    def call(self, method, req, who):
        F = f_pb()
        resp = {"SubmitApplication": F.SubmitResult,
                "ListApplications": F.ListApplicationsResponse}.get(method, F.Application)
        return self.srv.unary(SVC + method, type(req), resp)(req, metadata=self._md(who),
                                                              timeout=20)

    def create(self, who, item="", bundle="", key=""):
        return self.call("CreateApplication", f_pb().CreateApplicationRequest(
            item_code=item, bundle_code=bundle, idempotency_key=key), who)

    def attach(self, who, aid, code, ids):
        return self.call("AttachMaterials", f_pb().AttachMaterialsRequest(
            application_id=aid, material_code=code, material_ids=list(ids)), who)

    def submit(self, who, aid, key="", tolerance=False, commit=False):
        return self.call("SubmitApplication", f_pb().SubmitApplicationRequest(
            application_id=aid, idempotency_key=key, sign_tolerance_commitment=tolerance,
            notify_commit=commit), who)

    def get(self, who, aid):
        return self.call("GetApplication", f_pb().GetApplicationRequest(application_id=aid), who)

    def withdraw(self, who, aid, reason=""):
        return self.call("WithdrawApplication", f_pb().WithdrawApplicationRequest(
            application_id=aid, reason=reason), who)

    def supplement(self, who, aid):
        return self.call("SupplementMaterials", f_pb().SupplementMaterialsRequest(
            application_id=aid), who)

    def list_apps(self, who, **kw):
        return self.call("ListApplications", f_pb().ListApplicationsRequest(**kw), who)

    def upload(self, who, data=PDF, name="材料.pdf"):
        M = m_pb()
        msgs = [M.UploadChunk(header=M.UploadHeader(file_name=name)), M.UploadChunk(data=data)]
        fn = self.srv.stream_unary(MAT + "UploadMaterial", M.UploadChunk, M.Material)
        return fn(iter(msgs), metadata=self._md(who), timeout=20).material_id

    def issue(self, who, ltype, name="电子证照", until=None):
        args = ["licence", "issue", "--phone", who.phone, "--type", ltype, "--name", name,
                "--number", "N" + secrets.token_hex(6), "--issuer", "新乡市测试发证机关"]
        if until:
            args += ["--valid-until", until]
        r = t.run_admin(args, redis_url=self.srv.redis_url,
                        env={"FXB_DATA_DIR": self.srv.env["FXB_DATA_DIR"]}, check=True)
        return r.stdout.strip().rsplit(" ", 1)[-1]

    def wallet(self, who):
        M = m_pb()
        return self.srv.unary(MAT + "ListWallet", M.ListWalletRequest, M.ListWalletResponse)(
            M.ListWalletRequest(page_size=100), metadata=self._md(who), timeout=20).materials

    def guide(self, code):
        C = c_pb()
        return self.srv.unary(CAT + "GetItem", C.GetItemRequest, C.ServiceItem)(
            C.GetItemRequest(code=code), timeout=20).guide

    def sweep(self):
        d = t.diag_pb()
        return self.srv.unary(DIAG + "RunSweeper", d.RunSweeperRequest, d.RunSweeperResponse)(
            d.RunSweeperRequest(), timeout=30)

    def person(self):
        return self.people.l2_person()[0]

    def filing_notices(self, who, aid, n=1):
        return self.wait_notices(who, n, ref=aid, kind="filing.status")

    # --- art. 18: one answer with every problem ---------------------------------------
    def test_every_problem_is_listed_at_once(self):
        F = f_pb()
        who = self.person()
        app = self.create(who, COMMIT)
        self.assertEqual(app.status, F.APPLICATION_STATUS_DRAFT)
        self.assertEqual(app.subject_id, who.account_id)
        self.assertEqual(app.filed_by, who.account_id)
        self.assertEqual(app.grant_id, "")
        # M01 wants an id_card: a household register is the wrong licence
        wrong = self.issue(who, "household_register", "居民户口簿")
        self.attach(who, app.application_id, "M01", [wrong])
        res = self.submit(who, app.application_id)
        self.assertEqual(res.outcome, F.SUBMIT_OUTCOME_NEEDS_CORRECTION)
        got = sorted((p.material_code, p.kind) for p in res.problems)
        self.assertEqual(got, [("M01", F.PROBLEM_KIND_FORM_NOT_ACCEPTED),
                               ("M02", F.PROBLEM_KIND_MISSING),
                               ("M03", F.PROBLEM_KIND_MISSING)])
        for p in res.problems:
            self.assertTrue(p.why and p.how_to_fix and p.material_name)
        self.assertGreater(res.fix_by_ms, self.server_now_ms())
        self.assertEqual(res.application.status, F.APPLICATION_STATUS_NEEDS_CORRECTION)
        self.assertEqual(res.application.fix_by_ms, res.fix_by_ms)
        self.assertEqual(res.application.submission, 1)
        self.assertEqual(len(res.application.problems), 3)
        notice = self.filing_notices(who, app.application_id)[0]
        for p in res.problems:
            self.assertIn(p.material_name, notice.body)
        self.assertIn("补正", notice.body)

    def test_nothing_outside_the_guide_is_asked(self):
        F = f_pb()
        who = self.person()
        app = self.create(who, COMMIT)
        mid = self.upload(who)
        self.fails(lambda: self.attach(who, app.application_id, "M99", [mid]), INVALID,
                   "MATERIAL_NOT_IN_GUIDE")
        res = self.submit(who, app.application_id)
        codes = {m.code for m in self.guide(COMMIT).materials}
        self.assertTrue(res.problems)
        for p in res.problems:
            self.assertIn(p.material_code, codes)
        # optional materials are never asked for
        app2 = self.create(who, TOLERATED)
        self.attach(who, app2.application_id, "M01", [self.upload(who)])
        res2 = self.submit(who, app2.application_id)
        self.assertEqual([p.material_code for p in res2.problems], ["M02"])
        self.assertEqual(res2.problems[0].kind, F.PROBLEM_KIND_TOLERABLE_MISSING)

    def test_too_many_files_expired_licence_and_deleted_material_are_problems(self):
        F = f_pb()
        who = self.person()
        app = self.create(who, TOLERATED)
        a, b = self.upload(who), self.upload(who, JPEG, "卡.jpg")
        self.attach(who, app.application_id, "M03", [a, b])  # max_files 1
        lic = self.issue(who, "id_card", "居民身份证", until="20200101")
        app2 = self.create(who, PLAIN)
        res = self.submit(who, app.application_id)
        kinds = {(p.material_code, p.kind) for p in res.problems}
        self.assertIn(("M03", F.PROBLEM_KIND_TOO_MANY_FILES), kinds)
        self.assertIn(("M01", F.PROBLEM_KIND_MISSING), kinds)
        # an expired licence is never attached by the server, and never accepted
        c = self.create(who, COMMIT)
        self.attach(who, c.application_id, "M01", [lic])
        res = self.submit(who, c.application_id)
        self.assertIn(("M01", F.PROBLEM_KIND_LICENCE_EXPIRED),
                      {(p.material_code, p.kind) for p in res.problems})
        self.assertTrue(app2.application_id)

    # --- art. 19: never asked again -------------------------------------------------
    def test_a_licence_in_the_wallet_is_attached_by_the_server(self):
        F = f_pb()
        who = self.person()
        lic = self.issue(who, "household_register", "居民户口簿")
        app = self.create(who, PLAIN)
        res = self.submit(who, app.application_id)
        self.assertEqual(res.outcome, F.SUBMIT_OUTCOME_SUBMITTED, res.problems)
        self.assertEqual(list(res.problems), [])
        given = {m.material_code: m for m in res.application.materials}
        self.assertEqual(list(given["M01"].material_ids), [lic])
        self.assertTrue(given["M01"].auto_attached)
        self.assertEqual(res.application.status, F.APPLICATION_STATUS_SUBMITTED)

    # --- art. 20: 容缺受理 --------------------------------------------------------------
    def test_tolerated_acceptance_then_withdrawn_by_the_sweeper_after_the_deadline(self):
        F = f_pb()
        who = self.person()
        app = self.create(who, TOLERATED)
        self.attach(who, app.application_id, "M01", [self.upload(who)])
        res = self.submit(who, app.application_id, tolerance=True)
        self.assertEqual(res.outcome, F.SUBMIT_OUTCOME_ACCEPTED_TOLERATED)
        a = res.application
        self.assertEqual(a.status, F.APPLICATION_STATUS_ACCEPTED)
        self.assertEqual(list(a.tolerated_missing), ["M02"])
        self.assertGreater(a.supplement_by_ms, a.accepted_at_ms)
        self.assertGreater(a.accepted_at_ms, 0)
        self.assertGreater(a.deadline_date, 20000000)
        self.assertIn(a.time_state, (F.TIME_STATE_ON_TIME, F.TIME_STATE_DUE_SOON))
        # before the deadline the sweeper leaves it alone
        self.sweep()
        self.assertEqual(self.get(who, app.application_id).status, F.APPLICATION_STATUS_ACCEPTED)
        # past it: deemed withdrawn, with a notice
        self.clock(a.supplement_by_ms - self.server_now_ms() + DAY)
        self.sweep()
        late = self.at_server_time(who)  # tokens by the moved clock
        got = self.get(late, app.application_id)
        self.assertEqual(got.status, F.APPLICATION_STATUS_WITHDRAWN)
        self.assertEqual(got.history[-1].actor_role, "system")
        notices = self.filing_notices(late, app.application_id, 2)
        self.assertIn("已撤回", notices[0].title + notices[0].body)

    def test_tolerable_missing_without_commitment_needs_correction(self):
        F = f_pb()
        who = self.person()
        app = self.create(who, TOLERATED)
        self.attach(who, app.application_id, "M01", [self.upload(who)])
        res = self.submit(who, app.application_id)
        self.assertEqual(res.outcome, F.SUBMIT_OUTCOME_NEEDS_CORRECTION)
        self.assertEqual([(p.material_code, p.kind) for p in res.problems],
                         [("M02", F.PROBLEM_KIND_TOLERABLE_MISSING)])

    def test_supplement_clears_the_tolerated_materials(self):
        F = f_pb()
        who = self.person()
        app = self.create(who, TOLERATED)
        self.attach(who, app.application_id, "M01", [self.upload(who)])
        self.submit(who, app.application_id, tolerance=True)
        err = self.fails(lambda: self.supplement(who, app.application_id), PRECOND,
                         "SUPPLEMENT_INCOMPLETE")
        self.assertIn("M02", err.details())
        # after acceptance only owed materials may be given
        self.fails(lambda: self.attach(who, app.application_id, "M03", [self.upload(who)]),
                   PRECOND, "MATERIAL_NOT_OWED")
        self.attach(who, app.application_id, "M02", [self.upload(who)])
        got = self.supplement(who, app.application_id)
        self.assertEqual(got.status, F.APPLICATION_STATUS_ACCEPTED)
        self.assertEqual(list(got.tolerated_missing), [])
        self.assertEqual(got.supplement_by_ms, 0)
        # no timer any more: the sweeper never withdraws it
        self.clock(10 * DAY)
        self.sweep()
        self.assertEqual(self.get(self.at_server_time(who), app.application_id).status,
                         F.APPLICATION_STATUS_ACCEPTED)

    def test_needs_correction_keeps_its_deadline_and_is_withdrawn_after_it(self):
        F = f_pb()
        who = self.person()
        app = self.create(who, PLAIN)
        first = self.submit(who, app.application_id)
        self.assertEqual(first.outcome, F.SUBMIT_OUTCOME_NEEDS_CORRECTION)
        second = self.submit(who, app.application_id)
        self.assertEqual(second.fix_by_ms, first.fix_by_ms)
        self.assertEqual(second.application.submission, 2)
        self.clock(first.fix_by_ms - self.server_now_ms() + 1000)
        self.sweep()
        got = self.get(self.at_server_time(who), app.application_id)
        self.assertEqual(got.status, F.APPLICATION_STATUS_WITHDRAWN)
        self.assertEqual(got.history[-1].reason, "补正期限已过，视为撤回")

    # --- art. 21: 告知承诺制 ---------------------------------------------------------------
    def _commit_ready(self, who):
        app = self.create(who, COMMIT)
        for code in ("M01", "M02", "M03"):
            self.attach(who, app.application_id, code, [self.upload(who)])
        return app

    def test_notify_commit_is_approved_at_once(self):
        F = f_pb()
        who = self.person()
        app = self._commit_ready(who)
        res = self.submit(who, app.application_id, commit=True)
        self.assertEqual(res.outcome, F.SUBMIT_OUTCOME_APPROVED_COMMITTED)
        self.assertEqual(res.application.status, F.APPLICATION_STATUS_APPROVED)
        self.assertTrue(res.application.notify_commit)
        self.assertGreater(res.application.decided_at_ms, 0)

    def test_notify_commit_is_refused_for_a_flagged_subject(self):
        F = f_pb()
        for flag in (("bad_credit", "1"), ("false_commitment", "A" * 22)):
            who = self.person()
            t.redis_cmd(self.srv.redis_url, "HSET", "fxb:credit:%s" % who.account_id, *flag)
            app = self._commit_ready(who)
            self.fails(lambda: self.submit(who, app.application_id, commit=True), PRECOND,
                       "CREDIT_EXCLUDED")
            self.assertEqual(self.get(who, app.application_id).status,
                             F.APPLICATION_STATUS_DRAFT)
            # the ordinary procedure stays open
            res = self.submit(who, app.application_id)
            self.assertEqual(res.outcome, F.SUBMIT_OUTCOME_SUBMITTED)

    def test_notify_commit_only_where_the_guide_allows_it(self):
        who = self.person()
        app = self.create(who, PLAIN)
        self.fails(lambda: self.submit(who, app.application_id, commit=True), PRECOND,
                   "NOTIFY_COMMIT_NOT_ALLOWED")

    # --- art. 18: immediate items ---------------------------------------------------------
    def test_an_immediate_item_is_completed_with_its_licence_in_the_wallet(self):
        F = f_pb()
        who = self.person()
        app = self.create(who, IMMEDIATE)
        self.attach(who, app.application_id, "M01", [self.upload(who)])
        res = self.submit(who, app.application_id)
        self.assertEqual(res.outcome, F.SUBMIT_OUTCOME_COMPLETED)
        got = self.get(who, app.application_id)
        self.assertEqual(got.status, F.APPLICATION_STATUS_COMPLETED)
        self.assertGreater(got.completed_at_ms, 0)
        self.assertTrue(got.result_material_id)
        lic = [m for m in self.wallet(who) if m.material_id == got.result_material_id]
        self.assertEqual(len(lic), 1)
        self.assertEqual(lic[0].licence_type, "no_criminal_record_certificate")
        self.assertEqual(lic[0].source_application, app.application_id)
        self.assertEqual(lic[0].issuer, "新乡市公安局")

    # --- idempotency ---------------------------------------------------------------------
    def test_create_and_submit_are_idempotent(self):
        F = f_pb()
        who = self.person()
        key = uuid.uuid4().hex
        a = self.create(who, PLAIN, key=key)
        b = self.create(who, PLAIN, key=key)
        self.assertEqual(a.application_id, b.application_id)
        self.fails(lambda: self.create(who, COMMIT, key=key), INVALID, "IDEMPOTENCY_KEY_REUSED")
        self.issue(who, "household_register", "居民户口簿")
        skey = uuid.uuid4().hex
        r1 = self.submit(who, a.application_id, key=skey)
        r2 = self.submit(who, a.application_id, key=skey)
        self.assertEqual(r1, r2)
        self.assertEqual(r1.outcome, F.SUBMIT_OUTCOME_SUBMITTED)
        self.assertEqual(self.get(who, a.application_id).submission, 1)
        # a new submission (no key) of a submitted application is a state error
        self.fails(lambda: self.submit(who, a.application_id), PRECOND, "APPLICATION_STATE")
        # the same key for another request is refused
        self.fails(lambda: self.submit(who, self.create(who, PLAIN).application_id, key=key),
                   INVALID, "IDEMPOTENCY_KEY_REUSED")

    # --- art. 22: 一件事一次办 ---------------------------------------------------------------
    def test_a_bundle_is_filed_as_one(self):
        F = f_pb()
        who = self.person()
        parent = self.create(who, bundle=BUNDLE)
        self.assertEqual(parent.item_code, "")
        self.assertEqual(parent.bundle_code, BUNDLE)
        self.assertEqual(len(parent.child_application_ids), 5)
        children = [self.get(who, c) for c in parent.child_application_ids]
        for c in children:
            self.assertEqual(c.parent_application_id, parent.application_id)
            self.assertEqual(c.status, F.APPLICATION_STATUS_DRAFT)
            self.assertEqual(c.bundle_code, BUNDLE)
        # one attach to the parent reaches every child whose guide lists M01
        mid = self.upload(who)
        self.attach(who, parent.application_id, "M01", [mid])
        for c in parent.child_application_ids:
            got = {m.material_code: list(m.material_ids) for m in self.get(who, c).materials}
            self.assertEqual(got.get("M01"), [mid])
        # a child is submitted with its bundle, not alone
        self.fails(lambda: self.submit(who, children[0].application_id), PRECOND, "BUNDLE_CHILD")
        res = self.submit(who, parent.application_id)
        self.assertEqual(res.outcome, F.SUBMIT_OUTCOME_NEEDS_CORRECTION)
        self.assertTrue(res.problems)
        statuses = [self.get(who, c).status for c in parent.child_application_ids]
        got = self.get(who, parent.application_id)
        order = [F.APPLICATION_STATUS_DRAFT, F.APPLICATION_STATUS_NEEDS_CORRECTION,
                 F.APPLICATION_STATUS_SUBMITTED, F.APPLICATION_STATUS_COMPLETED]
        self.assertEqual(got.status, min(statuses, key=order.index))
        notes = [h.reason for h in got.history]
        for c in children:
            self.assertTrue(any(n.startswith(c.item_name + "：") for n in notes), notes)
        # withdrawing the bundle withdraws every child still open
        self.withdraw(who, parent.application_id)
        for c in parent.child_application_ids:
            self.assertIn(self.get(who, c).status, (F.APPLICATION_STATUS_WITHDRAWN,
                                                    F.APPLICATION_STATUS_COMPLETED))

    # --- proxies (art. 9) ------------------------------------------------------------------
    def test_a_proxy_files_in_scope_and_is_refused_out_of_scope(self):
        F = f_pb()
        principal = self.people.l3_person()[0]
        agent = self.person()
        g, token = self.delegated(principal, agent, ["filing.submit", "filing.read",
                                                     "inbox.read", "item:" + TOLERATED])
        app = self.create(token, TOLERATED)
        self.assertEqual(app.subject_id, principal.account_id)
        self.assertEqual(app.filed_by, agent.account_id)
        self.assertEqual(app.grant_id, g.grant_id)
        self.fails(lambda: self.create(token, COMMIT), DENIED, "OUT_OF_SCOPE")
        # the principal's own application of another item is out of the agent's reach
        other = self.create(principal, COMMIT)
        self.fails(lambda: self.get(token, other.application_id), DENIED, "OUT_OF_SCOPE")
        listed = [a.application_id for a in self.list_apps(token).applications]
        self.assertIn(app.application_id, listed)
        self.assertNotIn(other.application_id, listed)
        # the agent's own applications are not the principal's
        mine = self.create(agent, PLAIN)
        self.fails(lambda: self.get(token, mine.application_id), NOT_FOUND,
                   "APPLICATION_NOT_FOUND")
        mid = self.upload(token)
        self.attach(token, app.application_id, "M01", [mid])
        res = self.submit(token, app.application_id)
        self.assertEqual(res.outcome, F.SUBMIT_OUTCOME_NEEDS_CORRECTION)
        self.filing_notices(principal, app.application_id)
        self.filing_notices(agent, app.application_id)
        hist = self.get(principal, app.application_id).history
        self.assertEqual(hist[-1].actor_role, "agent")
        self.assertEqual(hist[-1].actor_id, agent.account_id)

    # --- privacy and states ------------------------------------------------------------------
    def test_another_citizens_application_is_not_found(self):
        owner, other = self.person(), self.person()
        app = self.create(owner, PLAIN)
        aid = app.application_id
        for fn in (lambda: self.get(other, aid), lambda: self.submit(other, aid),
                   lambda: self.withdraw(other, aid), lambda: self.supplement(other, aid),
                   lambda: self.attach(other, aid, "M01", [self.upload(other)])):
            self.fails(fn, NOT_FOUND, "APPLICATION_NOT_FOUND")
        self.assertNotIn(aid, [a.application_id for a in self.list_apps(other).applications])
        # a wallet entry of someone else is not found
        theirs = self.upload(other)
        self.fails(lambda: self.attach(owner, aid, "M01", [theirs]), NOT_FOUND,
                   "MATERIAL_NOT_FOUND")

    def test_illegal_transitions_are_refused_naming_the_status(self):
        F = f_pb()
        who = self.person()
        app = self.create(who, PLAIN)
        self.fails(lambda: self.supplement(who, app.application_id), PRECOND,
                   "APPLICATION_STATE")
        self.withdraw(who, app.application_id, "不办了")
        got = self.get(who, app.application_id)
        self.assertEqual(got.status, F.APPLICATION_STATUS_WITHDRAWN)
        self.assertEqual(got.history[-1].reason, "不办了")
        for fn in (lambda: self.withdraw(who, app.application_id),
                   lambda: self.submit(who, app.application_id),
                   lambda: self.attach(who, app.application_id, "M01", [self.upload(who)])):
            err = self.fails(fn, PRECOND, "APPLICATION_STATE")
            self.assertIn("WITHDRAWN", err.details())
        done = self.create(who, IMMEDIATE)
        self.attach(who, done.application_id, "M01", [self.upload(who)])
        self.submit(who, done.application_id)
        self.fails(lambda: self.withdraw(who, done.application_id), PRECOND, "APPLICATION_STATE")

    def test_attached_materials_are_in_use_until_the_application_ends(self):
        who = self.person()
        app = self.create(who, TOLERATED)
        mid = self.upload(who)
        self.attach(who, app.application_id, "M01", [mid])
        M = m_pb()
        delete = self.srv.unary(MAT + "DeleteMaterial", M.DeleteMaterialRequest,
                                M.DeleteMaterialResponse)
        self.fails(lambda: delete(M.DeleteMaterialRequest(material_id=mid), metadata=who.md(),
                                  timeout=20), PRECOND, "MATERIAL_IN_USE")
        self.withdraw(who, app.application_id)
        delete(M.DeleteMaterialRequest(material_id=mid), metadata=who.md(), timeout=20)

    def test_list_is_newest_first_paginated_and_filtered(self):
        F = f_pb()
        who = self.person()
        ids = []
        for _ in range(5):
            ids.append(self.create(who, PLAIN).application_id)
            time.sleep(0.005)  # distinct created_at_ms: "newest" is well defined
        self.withdraw(who, ids[0])
        seen, token = [], ""
        while True:
            page = self.list_apps(who, page_size=2, page_token=token)
            self.assertLessEqual(len(page.applications), 2)
            seen += [a.application_id for a in page.applications]
            token = page.next_page_token
            if not token:
                break
        self.assertEqual(seen, list(reversed(ids)))
        drafts = self.list_apps(who, status=F.APPLICATION_STATUS_WITHDRAWN).applications
        self.assertEqual([a.application_id for a in drafts], [ids[0]])
        self.assertEqual(len(self.list_apps(who).applications[0].history), 0)

    def test_bad_inputs(self):
        who = self.person()
        app = self.create(who, PLAIN)
        aid = app.application_id
        cases = [
            (lambda: self.create(who), INVALID, "ITEM_OR_BUNDLE_REQUIRED"),
            (lambda: self.create(who, PLAIN, BUNDLE), INVALID, "ITEM_OR_BUNDLE_REQUIRED"),
            (lambda: self.create(who, "XX-NOPE-0000"), NOT_FOUND, "ITEM_NOT_FOUND"),
            (lambda: self.create(who, bundle="B-NOPE"), NOT_FOUND, "BUNDLE_NOT_FOUND"),
            (lambda: self.create(who, PLAIN, key="bad key!"), INVALID,
             "IDEMPOTENCY_KEY_INVALID"),
            (lambda: self.get(who, "short"), INVALID, "APPLICATION_ID_INVALID"),
            (lambda: self.get(who, "A" * 22), NOT_FOUND, "APPLICATION_NOT_FOUND"),
            (lambda: self.attach(who, aid, "M01", ["x%d" % i for i in range(11)]), INVALID,
             "TOO_MANY_MATERIAL_IDS"),
            (lambda: self.attach(who, aid, "M 1", []), INVALID, "MATERIAL_CODE_INVALID"),
            (lambda: self.attach(who, aid, "M01", ["A" * 22]), NOT_FOUND, "MATERIAL_NOT_FOUND"),
            (lambda: self.attach(who, aid, "M01", ["bad/id"]), INVALID, "MATERIAL_ID_INVALID"),
            (lambda: self.withdraw(who, aid, "长" * 201), INVALID, "REASON_INVALID"),
            (lambda: self.list_apps(who, page_size=101), INVALID, "PAGE_SIZE_INVALID"),
            (lambda: self.list_apps(who, page_token="zz"), INVALID, "PAGE_TOKEN_INVALID"),
            (lambda: self.list_apps(who, page_token="3132"), INVALID, "PAGE_TOKEN_INVALID"),
            (lambda: self.list_apps(who, status=99), INVALID, "STATUS_INVALID"),
        ]
        for fn, code, reason in cases:
            with self.subTest(reason=reason):
                self.fails(fn, code, reason)
        # CreateApplication needs a real-name account (L2)
        l1 = self.people.sign_in()
        self.fails(lambda: self.create(l1, PLAIN), DENIED, "LEVEL_TOO_LOW")
        # removing what was given is an empty list
        mid = self.upload(who)
        self.attach(who, aid, "M01", [mid])
        got = self.attach(who, aid, "M01", [])
        self.assertEqual([m for m in got.materials if m.material_code == "M01"], [])


if __name__ == "__main__":
    t.main()
