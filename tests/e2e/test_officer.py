"""fxb.v1.OfficerService end to end: the department officers' workflow
(regulation art. 18, 20, 21, 36). Applications are drafted and submitted
through FilingService by real applicants (L2 people with uploads in their
wallets); officers of the item's department accept, ask for correction,
review, pause for special procedures, decide and complete them.

The seed catalogue and calendar are imported once. Every test pins the
server's clock (DiagService/SetClockOffset) to a date of 2026 it names, so
deadlines are checked against known holidays (the 2026 Spring Festival:
15-23 February off, Saturday 14 February worked), and puts it back in
tearDown. Tokens are re-signed at the server's time (the harness's
forge_token with the server's key) whenever the clock moved, as
test_proxy.py does.

Items used (data/catalog/xinxiang.json):
  XX-SD-0001 居民用水报装       xx-urban  5 working days, SP1, no licence
  XX-GA-0003 居民身份证换领     xx-police licence result id_card
  XX-GA-0006 居住证办理         xx-police 容缺 (M04 tolerable)
  XX-SC-0001 个体工商户设立登记 hq-samr   告知承诺 allowed, licence result"""
import datetime
import uuid

import grpc

import fxbtest as t
import people

OFFICER = "/fxb.v1.OfficerService/"
FILING = "/fxb.v1.FilingService/"
DIAG = "/fxb.v1.DiagService/"
MATERIAL = "/fxb.v1.MaterialService/"
CATALOG = "/fxb.v1.CatalogService/"

INVALID = grpc.StatusCode.INVALID_ARGUMENT
NOT_FOUND = grpc.StatusCode.NOT_FOUND
DENIED = grpc.StatusCode.PERMISSION_DENIED
PRECONDITION = grpc.StatusCode.FAILED_PRECONDITION

WATER, WATER_DEPT = "XX-SD-0001", "xx-urban"
ID_CARD, POLICE = "XX-GA-0003", "xx-police"
PERMIT = "XX-GA-0006"
SHOP, SAMR = "XX-SC-0001", "hq-samr"
OTHER_DEPT = "xx-edu"

CST = datetime.timezone(datetime.timedelta(hours=8))
DAY_MS = 24 * 3600 * 1000

PDF = b"%PDF-1.7\n" + b"1 0 obj << /Type /Catalog >> endobj\n" * 10 + b"%%EOF\n"
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(range(256)) * 2 + b"\xff\xd9"


def fpb():
    return t.pb("fxb/v1/filing")


def opb():
    return t.pb("fxb/v1/officer")


def cpb():
    return t.pb("fxb/v1/catalog")


def mpb():
    return t.pb("fxb/v1/material")


def cst_ms(y, m, d, hh=10, mm=0):
    """Epoch ms of a China-time wall clock."""
    return int(datetime.datetime(y, m, d, hh, mm, tzinfo=CST).timestamp() * 1000)


def end_of_day_ms(date):
    """23:59:59.999 China time of a yyyymmdd date."""
    return cst_ms(date // 10000, date // 100 % 100, date % 100, 0) + DAY_MS - 1


def status_name(app):
    return fpb().ApplicationStatus.Name(app.status)


class OfficerTest(t.TestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.srv = t.Server(extra_env=dict(t.AUTH_ENV)).__enter__()
        try:
            for what in ("catalog", "calendar"):
                t.run_admin([what, "import"], redis_url=cls.srv.redis_url, check=True)
            cls.people = people.People(cls.srv)
            cls.officer = {}
            for dept in (WATER_DEPT, POLICE, SAMR, OTHER_DEPT):
                phone = t.random_phone()
                t.make_staff(cls.srv, phone, "officer", dept)
                cls.officer[dept] = t.sign_in(cls.srv, phone)
            admin = t.random_phone()
            t.make_staff(cls.srv, admin, "admin")
            cls.admin = t.sign_in(cls.srv, admin)
            # applicants verify at the real time (identity challenges)
            cls.applicant = cls.people.l2_person()[0]
            cls.committer = cls.people.l2_person()[0]
            cls.rectifier = cls.people.l2_person()[0]
            cls.citizen = cls.people.l2_person()[0]
        except BaseException:
            cls.srv.__exit__(None, None, None)
            raise
        cls._offset = 0
        cls._tokens = {}
        cls._uploads = {}
        cls._guides = {}

    @classmethod
    def tearDownClass(cls):
        cls.srv.__exit__(None, None, None)

    def tearDown(self):
        # tests share the server: never leave its clock moved
        self.at_offset(0)

    # --- the clock and tokens ---------------------------------------------------
    def at_offset(self, offset_ms):
        d = t.diag_pb()
        fn = self.srv.unary(DIAG + "SetClockOffset", d.SetClockOffsetRequest,
                            d.SetClockOffsetResponse)
        r = fn(d.SetClockOffsetRequest(offset_ms=offset_ms), timeout=20)
        type(self)._offset = offset_ms
        return r.now_ms

    def at(self, ms):
        """Moves the server's clock to ms (epoch); returns the server's now."""
        now = self.at_offset(0)
        return self.at_offset(ms - now)

    def sweep(self):
        d = t.diag_pb()
        fn = self.srv.unary(DIAG + "RunSweeper", d.RunSweeperRequest, d.RunSweeperResponse)
        return fn(d.RunSweeperRequest(), timeout=20)

    def md(self, who):
        """who's call metadata, valid at the server's present time."""
        if self._offset == 0:
            return who.md()
        key = (who.sid, self._offset)
        tok = self._tokens.get(key)
        if tok is None:
            now = (int(datetime.datetime.now().timestamp() * 1000) + self._offset) // 1000
            claims = t.jwt_decode(who.access)[1]
            tok = t.forge_token(self.srv, base=claims, iat=now - 5, nbf=now - 5, exp=now + 600,
                                auth_time=now - 5, jti=uuid.uuid4().hex)
            self._tokens[key] = tok
        return t.bearer(tok)

    # --- calls --------------------------------------------------------------------
    def off(self, method, who=None, **fields):
        """OfficerService.<method>(fields) as who (default: the officer of
        fields["department"])."""
        O, F = opb(), fpb()
        req_cls, resp_cls = {
            "ListQueue": (O.ListQueueRequest, O.ListQueueResponse),
            "GetApplication": (O.OfficerGetRequest, F.Application),
            "AcceptApplication": (O.OfficerActionRequest, F.Application),
            "RequestCorrection": (O.RequestCorrectionRequest, F.Application),
            "StartReview": (O.OfficerActionRequest, F.Application),
            "StartSpecialProcedure": (O.SpecialProcedureRequest, F.Application),
            "EndSpecialProcedure": (O.OfficerActionRequest, F.Application),
            "ApproveApplication": (O.OfficerActionRequest, F.Application),
            "DenyApplication": (O.DenyApplicationRequest, F.Application),
            "CompleteApplication": (O.CompleteApplicationRequest, F.Application),
            "MarkCommitmentBroken": (O.MarkCommitmentBrokenRequest, F.Application),
            "ConfirmRectified": (O.OfficerActionRequest, F.Application),
            "OverdueReport": (O.OverdueReportRequest, O.OverdueReportResponse),
        }[method]
        who = who or self.officer[fields.get("department", "")]
        fn = self.srv.unary(OFFICER + method, req_cls, resp_cls)
        return fn(req_cls(**fields), metadata=self.md(who), timeout=20)

    def fil(self, method, req, who):
        F = fpb()
        resp = {"SubmitApplication": F.SubmitResult,
                "ListApplications": F.ListApplicationsResponse}.get(method, F.Application)
        return self.srv.unary(FILING + method, type(req), resp)(req, metadata=self.md(who),
                                                               timeout=20)

    def fails(self, fn, code, reason, mentions=None):
        with self.assertRaises(grpc.RpcError) as cm:
            fn()
        self.assertRpcError(cm.exception, code, reason)
        if mentions is not None:
            self.assertIn(mentions, cm.exception.details())
        return cm.exception

    def guide(self, item):
        if item not in self._guides:
            C = cpb()
            fn = self.srv.unary(CATALOG + "GetItem", C.GetItemRequest, C.ServiceItem)
            self._guides[item] = fn(C.GetItemRequest(code=item), timeout=20)
        return self._guides[item]

    def upload(self, who, kind):
        """A wallet entry of who (one per kind and person, reused)."""
        key = (who.account_id, kind)
        if key not in self._uploads:
            M = mpb()
            data, name = (PDF, "材料.pdf") if kind == "pdf" else (JPEG, "照片.jpg")

            def chunks():
                yield M.UploadChunk(header=M.UploadHeader(file_name=name))
                yield M.UploadChunk(data=data)

            fn = self.srv.stream_unary(MATERIAL + "UploadMaterial", M.UploadChunk, M.Material)
            self._uploads[key] = fn(chunks(), metadata=self.md(who), timeout=60).material_id
        return self._uploads[key]

    def draft(self, who, item, tolerate=False):
        """A draft with an upload for every required (and, unless tolerate,
        tolerable) material of the item's guide."""
        F, C = fpb(), cpb()
        app = self.fil("CreateApplication", F.CreateApplicationRequest(
            item_code=item, idempotency_key=uuid.uuid4().hex), who)
        for m in self.guide(item).guide.materials:
            if m.requirement == C.MATERIAL_REQUIREMENT_OPTIONAL:
                continue
            if m.requirement == C.MATERIAL_REQUIREMENT_TOLERABLE and tolerate:
                continue
            kind = "pdf" if "pdf" in m.accepted_forms else "jpeg"
            self.fil("AttachMaterials", F.AttachMaterialsRequest(
                application_id=app.application_id, material_code=m.code,
                material_ids=[self.upload(who, kind)]), who)
        return app.application_id

    def submit(self, who, aid, outcome="SUBMIT_OUTCOME_SUBMITTED", **kw):
        F = fpb()
        r = self.fil("SubmitApplication", F.SubmitApplicationRequest(
            application_id=aid, idempotency_key=uuid.uuid4().hex, **kw), who)
        self.assertEqual(F.SubmitOutcome.Name(r.outcome), outcome, r)
        return r

    def submitted(self, item=WATER, who=None):
        """A new application of who (default: the applicant), SUBMITTED."""
        who = who or self.applicant
        aid = self.draft(who, item)
        self.submit(who, aid)
        return aid

    def accepted(self, item=WATER, who=None, dept=WATER_DEPT):
        aid = self.submitted(item, who)
        self.off("AcceptApplication", department=dept, application_id=aid)
        return aid

    def in_review(self, item=WATER, who=None, dept=WATER_DEPT):
        aid = self.accepted(item, who, dept)
        self.off("StartReview", department=dept, application_id=aid)
        return aid

    def read(self, aid, dept, purpose="核查办理进度"):
        return self.off("GetApplication", department=dept, application_id=aid, purpose=purpose)

    def audit(self):
        """fxb:audit as a list of dicts (str values)."""
        out = []
        for _id, fields in t.redis_cmd(self.srv.redis_url, "XRANGE", "fxb:audit", "-", "+"):
            f = dict(zip(fields[0::2], fields[1::2]))
            out.append({k.decode(): v.decode() for k, v in f.items()})
        return out

    def audited(self, action, aid):
        return [e for e in self.audit() if e["action"] == action and aid in e["why"]]

    def last_officer_entry(self, app, officer):
        h = app.history[-1]
        self.assertEqual(h.actor_role, "officer")
        self.assertEqual(h.actor_id, officer.account_id)
        return h

    # --- art. 18: acceptance starts the time limit --------------------------------
    def test_accept_starts_the_time_limit_counted_across_the_spring_festival(self):
        self.at(cst_ms(2026, 2, 12))  # a Thursday
        aid = self.submitted()
        app = self.off("AcceptApplication", department=WATER_DEPT, application_id=aid,
                       note="材料齐全")
        self.assertEqual(status_name(app), "APPLICATION_STATUS_ACCEPTED")
        # 5 working days after 12 February: 13 (Fri), 14 (Sat, worked), then
        # 15-23 off, 24, 25, 26
        self.assertEqual(app.deadline_date, 20260226)
        self.assertEqual(app.deadline_ms, end_of_day_ms(20260226))
        self.assertEqual(app.time_limit_working_days, 5)
        self.assertAlmostEqual(app.accepted_at_ms, cst_ms(2026, 2, 12), delta=60000)
        self.assertEqual(fpb().TimeState.Name(app.time_state), "TIME_STATE_ON_TIME")
        full = self.read(aid, WATER_DEPT)
        h = self.last_officer_entry(full, self.officer[WATER_DEPT])
        self.assertEqual(fpb().ApplicationStatus.Name(h.to), "APPLICATION_STATUS_ACCEPTED")
        # into the department's running list, by its deadline
        score = t.redis_cmd(self.srv.redis_url, "ZSCORE", "fxb:dept:%s:running" % WATER_DEPT, aid)
        self.assertEqual(int(score), end_of_day_ms(20260226))
        self.assertTrue(self.audited("filing.accept", aid))

    # --- art. 18: one correction request per submission, listing everything --------
    def test_correction_once_per_submission_listing_everything_and_only_guide_materials(self):
        self.at(cst_ms(2026, 6, 1))  # a Monday
        aid = self.submitted()
        O = opb()
        # nothing outside the guide may be asked for (art. 17)
        self.fails(lambda: self.off("RequestCorrection", department=WATER_DEPT,
                                    application_id=aid,
                                    items=[O.CorrectionItem(material_code="M01", why="模糊"),
                                           O.CorrectionItem(material_code="M09", why="另需")]),
                   INVALID, "MATERIAL_NOT_IN_GUIDE", mentions="M09")
        app = self.off("RequestCorrection", department=WATER_DEPT, application_id=aid,
                       items=[O.CorrectionItem(material_code="M01", why="身份证照片模糊"),
                              O.CorrectionItem(material_code="M02", why="房产证缺少附记页")])
        self.assertEqual(status_name(app), "APPLICATION_STATUS_NEEDS_CORRECTION")
        names = {m.code: m.name for m in self.guide(WATER).guide.materials}
        self.assertEqual([(p.material_code, p.material_name, p.why) for p in app.problems],
                         [("M01", names["M01"], "身份证照片模糊"),
                          ("M02", names["M02"], "房产证缺少附记页")])
        for p in app.problems:
            self.assertEqual(fpb().ProblemKind.Name(p.kind), "PROBLEM_KIND_OFFICER_NOTE")
            self.assertTrue(p.how_to_fix)
        # fix by: the guide's correction_working_days (5) after 1 June
        days = self.guide(WATER).guide.correction_working_days
        self.assertEqual(days, 5)
        self.assertEqual(app.fix_by_ms, end_of_day_ms(20260608))
        # a second request for the same submission
        self.fails(lambda: self.off("RequestCorrection", department=WATER_DEPT,
                                    application_id=aid,
                                    items=[O.CorrectionItem(material_code="M01", why="再看")]),
                   PRECONDITION, "CORRECTION_ALREADY_REQUESTED")
        # a new submission may get its own request
        self.submit(self.applicant, aid)
        again = self.off("RequestCorrection", department=WATER_DEPT, application_id=aid,
                         items=[O.CorrectionItem(material_code="M02", why="附记页仍缺")])
        self.assertEqual(status_name(again), "APPLICATION_STATUS_NEEDS_CORRECTION")
        self.assertEqual([p.material_code for p in again.problems], ["M02"])
        self.assertEqual(len(self.audited("filing.request_correction", aid)), 2)

    # --- art. 20: 容缺 materials owed hold the review -------------------------------
    def test_review_waits_for_tolerated_materials(self):
        self.at(cst_ms(2026, 6, 1))
        who = self.applicant
        aid = self.draft(who, PERMIT, tolerate=True)
        r = self.submit(who, aid, outcome="SUBMIT_OUTCOME_ACCEPTED_TOLERATED",
                        sign_tolerance_commitment=True)
        self.assertTrue(r.application.tolerated_missing)
        self.fails(lambda: self.off("StartReview", department=POLICE, application_id=aid),
                   PRECONDITION, "SUPPLEMENT_PENDING")

    # --- time limits: special procedures pause the clock -------------------------------
    def test_special_procedure_pauses_the_clock(self):
        self.at(cst_ms(2026, 6, 1))  # Monday: 5 working days -> Monday 8 June
        aid = self.in_review()
        app = self.off("StartSpecialProcedure", department=WATER_DEPT, application_id=aid,
                       procedure_code="SP1")
        self.assertEqual(status_name(app), "APPLICATION_STATUS_SPECIAL_PROCEDURE")
        self.assertEqual(app.special_procedure_code, "SP1")
        self.assertEqual(fpb().TimeState.Name(app.time_state), "TIME_STATE_PAUSED")
        self.assertEqual(app.deadline_date, 20260608)
        # two working days (2, 3 June) in the procedure
        self.at(cst_ms(2026, 6, 3, 15))
        app = self.off("EndSpecialProcedure", department=WATER_DEPT, application_id=aid)
        self.assertEqual(status_name(app), "APPLICATION_STATUS_IN_REVIEW")
        self.assertEqual(app.special_procedure_code, "")
        self.assertEqual(app.deadline_date, 20260610)
        self.assertEqual(app.deadline_ms, end_of_day_ms(20260610))
        full = self.read(aid, WATER_DEPT)
        self.assertIn("SP1", full.history[-1].reason)
        self.assertIn("SP1", full.history[-2].reason)
        self.assertTrue(self.audited("filing.start_special_procedure", aid))
        self.assertTrue(self.audited("filing.end_special_procedure", aid))

    def test_special_procedures_are_only_the_guides(self):
        self.at(cst_ms(2026, 6, 1))
        aid = self.in_review()
        self.fails(lambda: self.off("StartSpecialProcedure", department=WATER_DEPT,
                                    application_id=aid, procedure_code="SP9"),
                   INVALID, "PROCEDURE_NOT_IN_GUIDE", mentions="SP9")

    # --- decisions ----------------------------------------------------------------------
    def test_approve_then_complete_records_each_step(self):
        self.at(cst_ms(2026, 6, 1))
        aid = self.in_review()
        app = self.off("ApproveApplication", department=WATER_DEPT, application_id=aid)
        self.assertEqual(status_name(app), "APPLICATION_STATUS_APPROVED")
        self.assertGreater(app.decided_at_ms, 0)
        app = self.off("CompleteApplication", department=WATER_DEPT, application_id=aid)
        self.assertEqual(status_name(app), "APPLICATION_STATUS_COMPLETED")
        self.assertGreater(app.completed_at_ms, 0)
        self.assertEqual(app.result_material_id, "")  # 居民用水报装 has no licence result
        full = self.read(aid, WATER_DEPT)
        officer = self.officer[WATER_DEPT].account_id
        steps = [(fpb().ApplicationStatus.Name(h.to), h.actor_role, h.actor_id)
                 for h in full.history if h.actor_role == "officer"]
        self.assertEqual([s[0] for s in steps],
                         ["APPLICATION_STATUS_ACCEPTED", "APPLICATION_STATUS_IN_REVIEW",
                          "APPLICATION_STATUS_APPROVED", "APPLICATION_STATUS_COMPLETED"])
        self.assertTrue(all(s[2] == officer for s in steps))
        for action in ("filing.accept", "filing.start_review", "filing.approve",
                       "filing.complete"):
            self.assertTrue(self.audited(action, aid), action)

    def test_deny_needs_a_reason_and_a_legal_basis(self):
        self.at(cst_ms(2026, 6, 1))
        aid = self.in_review()
        self.fails(lambda: self.off("DenyApplication", department=WATER_DEPT, application_id=aid,
                                    legal_basis="《城市供水条例》第二十条"),
                   INVALID, "DENIAL_REASON_REQUIRED")
        self.fails(lambda: self.off("DenyApplication", department=WATER_DEPT, application_id=aid,
                                    reason="不在供水管网覆盖范围内"),
                   INVALID, "LEGAL_BASIS_REQUIRED")
        self.fails(lambda: self.off("DenyApplication", department=WATER_DEPT, application_id=aid,
                                    reason="理" * 501, legal_basis="依据"),
                   INVALID, "DENIAL_REASON_REQUIRED")
        app = self.off("DenyApplication", department=WATER_DEPT, application_id=aid,
                       reason="不在供水管网覆盖范围内", legal_basis="《城市供水条例》第二十条")
        self.assertEqual(status_name(app), "APPLICATION_STATUS_DENIED")
        self.assertEqual(app.denial_reason, "不在供水管网覆盖范围内")
        self.assertEqual(app.denial_legal_basis, "《城市供水条例》第二十条")
        h = self.read(aid, WATER_DEPT).history[-1]
        self.assertEqual(h.reason, "不在供水管网覆盖范围内")
        self.assertEqual(h.legal_basis, "《城市供水条例》第二十条")
        # the applicant sees the same
        mine = self.fil("GetApplication", fpb().GetApplicationRequest(application_id=aid),
                        self.applicant)
        self.assertEqual(mine.denial_legal_basis, "《城市供水条例》第二十条")

    def test_complete_puts_the_licence_result_in_the_applicants_wallet(self):
        self.at(cst_ms(2026, 6, 1))
        who = self.citizen
        aid = self.in_review(ID_CARD, who, POLICE)
        self.off("ApproveApplication", department=POLICE, application_id=aid)
        self.fails(lambda: self.off("CompleteApplication", department=POLICE, application_id=aid,
                                    licence_valid_until_ms=1),
                   INVALID, "LICENCE_VALID_UNTIL_INVALID")
        until = cst_ms(2046, 6, 1)
        app = self.off("CompleteApplication", department=POLICE, application_id=aid,
                       licence_number="410702200001011234", licence_valid_until_ms=until)
        self.assertEqual(status_name(app), "APPLICATION_STATUS_COMPLETED")
        self.assertTrue(app.result_material_id)
        M = mpb()
        fn = self.srv.unary(MATERIAL + "GetMaterial", M.GetMaterialRequest, M.Material)
        lic = fn(M.GetMaterialRequest(material_id=app.result_material_id), metadata=self.md(who),
                 timeout=20)
        self.assertEqual(M.MaterialKind.Name(lic.kind), "MATERIAL_KIND_LICENCE")
        self.assertEqual(lic.licence_type, self.guide(ID_CARD).guide.result_licence_type)
        self.assertEqual(lic.source_application, aid)
        self.assertEqual(lic.valid_until_ms, until)
        self.assertNotIn("200001011234", lic.licence_number_masked)
        self.assertTrue(lic.licence_number_masked.endswith("1234"))
        # a second completion is refused, and issues nothing more
        self.fails(lambda: self.off("CompleteApplication", department=POLICE, application_id=aid),
                   PRECONDITION, "APPLICATION_STATE", mentions="COMPLETED")
        wallet = self.srv.unary(MATERIAL + "ListWallet", M.ListWalletRequest,
                                M.ListWalletResponse)(
            M.ListWalletRequest(kind=M.MATERIAL_KIND_LICENCE, page_size=100),
            metadata=self.md(who), timeout=20)
        self.assertEqual([m.material_id for m in wallet.materials
                          if m.source_application == aid], [app.result_material_id])

    def test_complete_without_a_number_issues_item_code_and_application_id(self):
        self.at(cst_ms(2026, 6, 1))
        who = self.citizen
        aid = self.in_review(ID_CARD, who, POLICE)
        self.off("ApproveApplication", department=POLICE, application_id=aid)
        app = self.off("CompleteApplication", department=POLICE, application_id=aid)
        M = mpb()
        lic = self.srv.unary(MATERIAL + "GetMaterial", M.GetMaterialRequest, M.Material)(
            M.GetMaterialRequest(material_id=app.result_material_id), metadata=self.md(who),
            timeout=20)
        self.assertEqual(lic.source_application, aid)
        self.assertTrue(lic.licence_number_masked.endswith(aid[-4:]),
                        lic.licence_number_masked)

    # --- art. 21: 告知承诺 --------------------------------------------------------------
    def committed(self, who):
        aid = self.draft(who, SHOP)
        r = self.submit(who, aid, outcome="SUBMIT_OUTCOME_APPROVED_COMMITTED", notify_commit=True)
        self.assertTrue(r.application.notify_commit)
        return aid

    def test_commitment_broken_and_not_rectified_is_revoked_by_the_sweeper(self):
        self.at(cst_ms(2026, 6, 1))  # Monday
        who = self.committer
        aid = self.committed(who)
        app = self.off("MarkCommitmentBroken", department=SAMR, application_id=aid,
                       reason="经营场所与承诺不符", rectify_working_days=2)
        self.assertTrue(app.commitment_broken)
        self.assertEqual(app.rectify_by_ms, end_of_day_ms(20260603))
        self.assertEqual(status_name(app), "APPLICATION_STATUS_APPROVED")
        self.assertTrue(self.audited("filing.mark_commitment_broken", aid))
        # not excluded yet: only a commitment left unrectified excludes (art. 21)
        credit = t.redis_cmd(self.srv.redis_url, "HGET", "fxb:credit:%s" % who.account_id,
                             "false_commitment")
        self.assertIsNone(credit)
        self.fails(lambda: self.off("MarkCommitmentBroken", department=SAMR, application_id=aid,
                                    reason="再次"),
                   PRECONDITION, "COMMITMENT_ALREADY_BROKEN")
        # the deadline passes without a rectification
        self.at(cst_ms(2026, 6, 4, 9))
        self.sweep()
        app = self.read(aid, SAMR)
        self.assertEqual(status_name(app), "APPLICATION_STATUS_REVOKED")
        self.assertEqual(app.history[-1].actor_role, "system")
        credit = t.redis_cmd(self.srv.redis_url, "HGET", "fxb:credit:%s" % who.account_id,
                             "false_commitment")
        self.assertEqual(credit, aid.encode())
        # the applicant can no longer choose 告知承诺
        again = self.draft(who, SHOP)
        self.fails(lambda: self.submit(who, again, notify_commit=True), PRECONDITION,
                   "CREDIT_EXCLUDED")

    def test_confirmed_rectification_keeps_the_approval(self):
        self.at(cst_ms(2026, 6, 1))
        who = self.rectifier
        aid = self.committed(who)
        self.off("MarkCommitmentBroken", department=SAMR, application_id=aid,
                 reason="承诺的消防条件未落实")
        timers = t.redis_cmd(self.srv.redis_url, "ZSCORE", "fxb:app:timers", aid + " rectify")
        self.assertIsNotNone(timers)
        app = self.off("ConfirmRectified", department=SAMR, application_id=aid,
                       note="现场复查已整改")
        self.assertFalse(app.commitment_broken)
        self.assertEqual(app.rectify_by_ms, 0)
        self.assertIsNone(t.redis_cmd(self.srv.redis_url, "ZSCORE", "fxb:app:timers",
                                      aid + " rectify"))
        self.at(cst_ms(2026, 7, 1))
        self.sweep()
        self.assertEqual(status_name(self.read(aid, SAMR)), "APPLICATION_STATUS_APPROVED")
        self.fails(lambda: self.off("ConfirmRectified", department=SAMR, application_id=aid),
                   PRECONDITION, "COMMITMENT_NOT_BROKEN")

    def test_only_notify_commit_approvals_can_be_marked_broken(self):
        self.at(cst_ms(2026, 6, 1))
        aid = self.in_review()
        self.off("ApproveApplication", department=WATER_DEPT, application_id=aid)
        self.fails(lambda: self.off("MarkCommitmentBroken", department=WATER_DEPT,
                                    application_id=aid, reason="不实"),
                   PRECONDITION, "NOT_NOTIFY_COMMIT")

    # --- art. 36 (4): every officer read is audited -----------------------------------
    def test_every_officer_read_is_audited_with_its_purpose(self):
        self.at(cst_ms(2026, 6, 1))
        aid = self.submitted()
        officer = self.officer[WATER_DEPT]
        self.fails(lambda: self.off("GetApplication", department=WATER_DEPT, application_id=aid),
                   INVALID, "PURPOSE_REQUIRED")
        self.fails(lambda: self.read(aid, WATER_DEPT, purpose="因" * 101),
                   INVALID, "PURPOSE_REQUIRED")
        self.assertEqual(self.audited("filing.officer_read", aid), [])
        app = self.read(aid, WATER_DEPT, purpose="受理前审核材料")
        self.assertTrue(app.history)
        self.assertTrue(app.materials)
        reads = self.audited("filing.officer_read", aid)
        self.assertEqual(len(reads), 1)
        self.assertEqual(reads[0]["actor"], officer.account_id)
        self.assertEqual(reads[0]["subject"], self.applicant.account_id)
        self.assertEqual(reads[0]["why"], "%s: 受理前审核材料" % aid)
        # a queue listing is not an individual read
        self.off("ListQueue", department=WATER_DEPT, page_size=100)
        self.assertEqual(len(self.audited("filing.officer_read", aid)), 1)
        self.read(aid, WATER_DEPT, purpose="再次核对")
        self.assertEqual(len(self.audited("filing.officer_read", aid)), 2)

    # --- access ---------------------------------------------------------------------------
    def every_method(self, dept, aid):
        O = opb()
        return [
            ("ListQueue", dict(department=dept)),
            ("GetApplication", dict(department=dept, application_id=aid, purpose="查看")),
            ("AcceptApplication", dict(department=dept, application_id=aid)),
            ("RequestCorrection", dict(department=dept, application_id=aid,
                                       items=[O.CorrectionItem(material_code="M01",
                                                               why="模糊")])),
            ("StartReview", dict(department=dept, application_id=aid)),
            ("StartSpecialProcedure", dict(department=dept, application_id=aid,
                                           procedure_code="SP1")),
            ("EndSpecialProcedure", dict(department=dept, application_id=aid)),
            ("ApproveApplication", dict(department=dept, application_id=aid)),
            ("DenyApplication", dict(department=dept, application_id=aid, reason="不符",
                                     legal_basis="依据")),
            ("CompleteApplication", dict(department=dept, application_id=aid)),
            ("MarkCommitmentBroken", dict(department=dept, application_id=aid, reason="不实")),
            ("ConfirmRectified", dict(department=dept, application_id=aid)),
            ("OverdueReport", dict(department=dept)),
        ]

    def test_another_departments_officer_is_denied_on_every_method(self):
        self.at(cst_ms(2026, 6, 1))
        aid = self.submitted()
        stranger = self.officer[OTHER_DEPT]
        # naming the application's department: refused by the access rule
        for method, fields in self.every_method(WATER_DEPT, aid):
            self.fails(lambda: self.off(method, who=stranger, **fields), DENIED,
                       "DEPARTMENT_MISMATCH")
        # naming their own: refused by the handler, never NOT_FOUND
        for method, fields in self.every_method(OTHER_DEPT, aid):
            if method in ("ListQueue", "OverdueReport"):
                continue
            self.fails(lambda: self.off(method, who=stranger, **fields), DENIED,
                       "DEPARTMENT_MISMATCH")
        queue = self.off("ListQueue", who=stranger, department=OTHER_DEPT, page_size=100)
        self.assertNotIn(aid, [a.application_id for a in queue.applications])
        self.assertEqual(self.audited("filing.officer_read", aid), [])
        # nothing happened to it
        app = self.read(aid, WATER_DEPT)
        self.assertEqual(status_name(app), "APPLICATION_STATUS_SUBMITTED")

    def test_a_citizen_is_refused_with_role_required(self):
        self.at(cst_ms(2026, 6, 1))
        aid = self.submitted()
        for method, fields in self.every_method(WATER_DEPT, aid):
            self.fails(lambda: self.off(method, who=self.applicant, **fields), DENIED,
                       "ROLE_REQUIRED")

    def test_an_admin_may_act_for_any_department_but_only_on_its_applications(self):
        self.at(cst_ms(2026, 6, 1))
        aid = self.submitted()
        self.fails(lambda: self.off("AcceptApplication", who=self.admin, department=POLICE,
                                    application_id=aid),
                   DENIED, "DEPARTMENT_MISMATCH")
        app = self.off("AcceptApplication", who=self.admin, department=WATER_DEPT,
                       application_id=aid)
        self.assertEqual(status_name(app), "APPLICATION_STATUS_ACCEPTED")

    # --- the queue --------------------------------------------------------------------------
    def test_the_queue_lists_waiting_applications_oldest_first_by_pages(self):
        ids = []
        for hour in (9, 10, 11):
            self.at(cst_ms(2026, 6, 2, hour))
            ids.append(self.submitted())
        self.off("AcceptApplication", department=WATER_DEPT, application_id=ids[1])
        self.at(cst_ms(2026, 6, 2, 15))
        seen, token, pages = [], "", 0
        while True:
            r = self.off("ListQueue", department=WATER_DEPT, page_size=2, page_token=token)
            self.assertLessEqual(len(r.applications), 2)
            seen += [a.application_id for a in r.applications]
            for a in r.applications:
                self.assertEqual(a.department, WATER_DEPT)
                self.assertEqual(len(a.history), 0)
            pages += 1
            token = r.next_page_token
            if not token:
                break
            self.assertLess(pages, 1000)
        self.assertEqual(len(seen), len(set(seen)))
        mine = [i for i in seen if i in ids]
        self.assertEqual(mine, ids)
        # filtered by status
        r = self.off("ListQueue", department=WATER_DEPT, page_size=100,
                     status=fpb().APPLICATION_STATUS_ACCEPTED)
        listed = [a.application_id for a in r.applications]
        while r.next_page_token:
            r = self.off("ListQueue", department=WATER_DEPT, page_size=100,
                         status=fpb().APPLICATION_STATUS_ACCEPTED,
                         page_token=r.next_page_token)
            listed += [a.application_id for a in r.applications]
        self.assertIn(ids[1], listed)
        self.assertNotIn(ids[0], listed)
        self.assertNotIn(ids[2], listed)

    def test_queue_pages_are_1_to_100_and_tokens_are_the_servers(self):
        self.fails(lambda: self.off("ListQueue", department=WATER_DEPT, page_size=101),
                   INVALID, "PAGE_SIZE_INVALID")
        for bad in ("abc", "12.short", "x" * 65, ".AAAAAAAAAAAAAAAAAAAAAA"):
            self.fails(lambda: self.off("ListQueue", department=WATER_DEPT, page_token=bad),
                       INVALID, "PAGE_TOKEN_INVALID")
        self.fails(lambda: self.off("ListQueue", department=WATER_DEPT,
                                    status=fpb().APPLICATION_STATUS_DRAFT),
                   INVALID, "STATUS_INVALID")

    # --- art. 36 (2): overdue report -----------------------------------------------------
    def test_overdue_report_counts_and_lists_by_the_calendar(self):
        self.at(cst_ms(2026, 6, 1))
        first = self.accepted()       # deadline Monday 8 June
        self.at(cst_ms(2026, 6, 2))
        second = self.accepted()      # deadline Tuesday 9 June
        self.at(cst_ms(2026, 6, 8))
        soon = self.accepted()        # deadline Monday 15 June
        # Thursday 11 June: two overdue, one with 2 working days left (12, 15)
        now = self.at(cst_ms(2026, 6, 11))
        r = self.off("OverdueReport", department=WATER_DEPT)
        self.assertAlmostEqual(r.as_of_ms, now, delta=5000)
        listed = [a.application_id for a in r.overdue_applications]
        self.assertIn(first, listed)
        self.assertIn(second, listed)
        self.assertLess(listed.index(first), listed.index(second))
        self.assertNotIn(soon, listed)
        self.assertGreaterEqual(r.overdue, 2)
        self.assertGreaterEqual(r.due_soon, 1)
        self.assertGreaterEqual(r.running, 3)
        self.assertLessEqual(len(listed), 100)
        deadlines = [a.deadline_ms for a in r.overdue_applications]
        self.assertEqual(deadlines, sorted(deadlines))
        for a in r.overdue_applications:
            self.assertEqual(fpb().TimeState.Name(a.time_state), "TIME_STATE_OVERDUE")
        queue = self.off("ListQueue", department=WATER_DEPT, page_size=100,
                         time_state=fpb().TIME_STATE_DUE_SOON)
        due = [a.application_id for a in queue.applications]
        while queue.next_page_token:
            queue = self.off("ListQueue", department=WATER_DEPT, page_size=100,
                             time_state=fpb().TIME_STATE_DUE_SOON,
                             page_token=queue.next_page_token)
            due += [a.application_id for a in queue.applications]
        self.assertIn(soon, due)
        self.assertNotIn(first, due)
        # a decision takes it out of the report
        self.off("StartReview", department=WATER_DEPT, application_id=first)
        self.off("ApproveApplication", department=WATER_DEPT, application_id=first)
        r = self.off("OverdueReport", department=WATER_DEPT)
        self.assertNotIn(first, [a.application_id for a in r.overdue_applications])

    # --- bad inputs -------------------------------------------------------------------------
    def test_bad_application_ids_and_unknown_applications(self):
        for bad in ("", "short", "!" * 22, "A" * 23):
            self.fails(lambda: self.off("AcceptApplication", department=WATER_DEPT,
                                        application_id=bad),
                       INVALID, "APPLICATION_ID_INVALID")
        self.fails(lambda: self.read("A" * 22, WATER_DEPT), NOT_FOUND, "APPLICATION_NOT_FOUND")
        self.fails(lambda: self.off("ApproveApplication", department=WATER_DEPT,
                                    application_id="B" * 22),
                   NOT_FOUND, "APPLICATION_NOT_FOUND")

    def test_illegal_transitions_name_the_current_status(self):
        self.at(cst_ms(2026, 6, 1))
        aid = self.submitted()
        for method, fields in (("StartReview", {}), ("ApproveApplication", {}),
                               ("DenyApplication", dict(reason="不符", legal_basis="依据")),
                               ("CompleteApplication", {}), ("EndSpecialProcedure", {}),
                               ("StartSpecialProcedure", dict(procedure_code="SP1"))):
            self.fails(lambda: self.off(method, department=WATER_DEPT, application_id=aid,
                                        **fields),
                       PRECONDITION, "APPLICATION_STATE", mentions="SUBMITTED")
        self.off("AcceptApplication", department=WATER_DEPT, application_id=aid)
        self.fails(lambda: self.off("AcceptApplication", department=WATER_DEPT,
                                    application_id=aid),
                   PRECONDITION, "APPLICATION_STATE", mentions="ACCEPTED")
        O = opb()
        self.fails(lambda: self.off("RequestCorrection", department=WATER_DEPT,
                                    application_id=aid,
                                    items=[O.CorrectionItem(material_code="M01", why="模糊")]),
                   PRECONDITION, "APPLICATION_STATE", mentions="ACCEPTED")

    def test_correction_requests_list_1_to_30_distinct_items_with_reasons(self):
        self.at(cst_ms(2026, 6, 1))
        aid = self.submitted()
        O = opb()
        bad = [
            ([], "CORRECTION_ITEMS_INVALID"),
            ([O.CorrectionItem(material_code="M01", why="模糊")] * 31,
             "CORRECTION_ITEMS_INVALID"),
            ([O.CorrectionItem(material_code="M01", why="")], "CORRECTION_WHY_INVALID"),
            ([O.CorrectionItem(material_code="M01", why="因" * 201)], "CORRECTION_WHY_INVALID"),
            ([O.CorrectionItem(material_code="M01", why="模糊"),
              O.CorrectionItem(material_code="M01", why="过期")], "CORRECTION_ITEM_DUPLICATE"),
        ]
        for items, reason in bad:
            self.fails(lambda: self.off("RequestCorrection", department=WATER_DEPT,
                                        application_id=aid, items=items),
                       INVALID, reason)
        self.assertEqual(status_name(self.read(aid, WATER_DEPT)),
                         "APPLICATION_STATUS_SUBMITTED")

    def test_notes_reasons_and_rectify_days_are_bounded(self):
        self.at(cst_ms(2026, 6, 1))
        aid = self.submitted()
        self.fails(lambda: self.off("AcceptApplication", department=WATER_DEPT,
                                    application_id=aid, note="注" * 501),
                   INVALID, "NOTE_INVALID")
        self.fails(lambda: self.off("MarkCommitmentBroken", department=WATER_DEPT,
                                    application_id=aid),
                   INVALID, "REASON_REQUIRED")
        self.fails(lambda: self.off("MarkCommitmentBroken", department=WATER_DEPT,
                                    application_id=aid, reason="不实", rectify_working_days=61),
                   INVALID, "RECTIFY_DAYS_INVALID")
        self.fails(lambda: self.off("OverdueReport", who=self.admin, department="bad dept"),
                   INVALID, "DEPARTMENT_INVALID")


if __name__ == "__main__":
    t.main()
