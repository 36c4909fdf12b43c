"""fxb.v1.RatingService end to end: 好差评 (regulation art. 32). Every
application is rated once after it ends, and the applicant is invited to
rate it when it ends; a real-name bad rating (不满意 or 非常不满意) opens a
follow-up case whose call-back is due within ONE working day (counted on the
working-day calendar) and whose rectification is due in 15 working days;
the department's officers record the call-back and then the rectification,
which closes the case and sends the applicant the feedback and an invitation
to rate the follow-up; overdue steps are flagged; aggregate results are
public and carry no personal data.

Applications are real: an immediate item (即办件) completes on submission,
which is the shortest way to an ended application. Due dates are checked at
fixed dates of the calendar data (a Friday, the day before a holiday) with
the development clock (DiagService/SetClockOffset), and tokens are re-signed
at the server's moved clock, as test_proxy.py does."""
import datetime
import secrets
import time
import uuid

import grpc

import fxbtest as t
from people import People

SVC = "/fxb.v1.RatingService/"
FILING = "/fxb.v1.FilingService/"
MATERIAL = "/fxb.v1.MaterialService/"
INBOX = "/fxb.v1.InboxService/"
DIAG = "/fxb.v1.DiagService/"

INVALID = grpc.StatusCode.INVALID_ARGUMENT
NOT_FOUND = grpc.StatusCode.NOT_FOUND
EXISTS = grpc.StatusCode.ALREADY_EXISTS
PRECONDITION = grpc.StatusCode.FAILED_PRECONDITION
DENIED = grpc.StatusCode.PERMISSION_DENIED
UNAUTH = grpc.StatusCode.UNAUTHENTICATED

# 个人参保证明查询打印: immediate, one required material (M01, PDF accepted)
ITEM = "XX-RS-0006"
DEPT = "xx-hrss"
# 退休人员待遇领取资格认证: immediate, same department; only the public
# results test rates it
PUBLIC_ITEM = "XX-RS-0005"
OTHER_DEPT = "xx-police"

CST = datetime.timezone(datetime.timedelta(hours=8))
PDF = b"%PDF-1.7\n" + b"1 0 obj << /Type /Catalog >> endobj\n" * 20 + b"%%EOF\n"

VERY_SATISFIED, SATISFIED, BASIC, DISSATISFIED, VERY_DISSATISFIED = 1, 2, 3, 4, 5


def rating_pb():
    return t.pb("fxb/v1/rating")


def filing_pb():
    return t.pb("fxb/v1/filing")


def material_pb():
    return t.pb("fxb/v1/material")


def inbox_pb():
    return t.pb("fxb/v1/inbox")


def cst_ms(y, mo, d, h=10, mi=0):
    """UTC epoch ms of a China-time wall clock reading."""
    return int(datetime.datetime(y, mo, d, h, mi, tzinfo=CST).timestamp() * 1000)


def end_of_day_ms(y, mo, d):
    """23:59:59.999 China time of a date, as UTC epoch ms."""
    return cst_ms(y, mo, d, 23, 59) + 59999


class RatingTest(t.TestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.srv = t.Server(extra_env=dict(t.AUTH_ENV)).__enter__()
        env = {"FXB_DATA_DIR": cls.srv.env["FXB_DATA_DIR"]}
        t.run_admin(["catalog", "import"], redis_url=cls.srv.redis_url, env=env, check=True)
        t.run_admin(["calendar", "import"], redis_url=cls.srv.redis_url, env=env, check=True)
        cls.people = People(cls.srv)
        cls.officer = cls.staff("officer", DEPT)
        cls.other_officer = cls.staff("officer", OTHER_DEPT)
        cls.admin = cls.staff("admin")
        cls._offset = 0

    @classmethod
    def tearDownClass(cls):
        cls.srv.__exit__(None, None, None)

    @classmethod
    def staff(cls, role, dept=None):
        phone = t.random_phone()
        t.make_staff(cls.srv, phone, role, dept)
        return t.sign_in(cls.srv, phone)

    def tearDown(self):
        self.clock(0)

    # --- the clock and tokens ------------------------------------------------------
    def clock(self, offset_ms):
        """SetClockOffset(offset_ms); returns the server's now_ms."""
        d = t.diag_pb()
        fn = self.srv.unary(DIAG + "SetClockOffset", d.SetClockOffsetRequest,
                            d.SetClockOffsetResponse)
        r = fn(d.SetClockOffsetRequest(offset_ms=offset_ms), timeout=20)
        type(self)._offset = offset_ms
        return r.now_ms

    def clock_at(self, when_ms):
        """Moves the server's clock to when_ms (China-time dates via cst_ms);
        returns the server's now_ms."""
        now = self.clock(0)
        return self.clock(when_ms - now)

    def md(self, who):
        """Metadata for who (a SignedIn) valid at the server's clock: who's
        own token at the real time, else the same claims re-signed with the
        server's key at the moved clock."""
        if self._offset == 0:
            return who.md()
        now = self.clock(self._offset) // 1000
        claims = t.jwt_decode(who.access)[1]
        return t.bearer(t.forge_token(self.srv, base=claims, iat=now, nbf=now, exp=now + 300,
                                      auth_time=now, jti=uuid.uuid4().hex))

    # --- calls ---------------------------------------------------------------------
    def rpc(self, path, req, resp_cls, who):
        md = self.md(who) if who is not None else None
        return self.srv.unary(path, type(req), resp_cls)(req, metadata=md, timeout=20)

    def rate(self, who, aid, level, comment="", **dims):
        R = rating_pb()
        req = R.RateApplicationRequest(application_id=aid, level=level, comment=comment,
                                       dimensions=R.RatingDimensions(**dims))
        return self.rpc(SVC + "RateApplication", req, R.Rating, who)

    def get_rating(self, who, aid):
        R = rating_pb()
        return self.rpc(SVC + "GetRating", R.GetRatingRequest(application_id=aid), R.Rating, who)

    def rate_follow_up(self, who, aid, level, comment=""):
        R = rating_pb()
        return self.rpc(SVC + "RateFollowUp", R.RateFollowUpRequest(
            application_id=aid, level=level, comment=comment), R.Rating, who)

    def follow_ups(self, who, dept=DEPT, **kw):
        R = rating_pb()
        return self.rpc(SVC + "ListFollowUps", R.ListFollowUpsRequest(department=dept, **kw),
                        R.ListFollowUpsResponse, who)

    def all_follow_ups(self, who, dept=DEPT, **kw):
        """Every page of ListFollowUps, in order."""
        out, token = [], ""
        while True:
            resp = self.follow_ups(who, dept, page_size=7, page_token=token, **kw)
            out += list(resp.follow_ups)
            if not resp.next_page_token:
                return out
            token = resp.next_page_token

    def call_back(self, who, case_id, note="已电话回访，核实情况属实", dept=DEPT):
        R = rating_pb()
        return self.rpc(SVC + "RecordCallBack", R.RecordCallBackRequest(
            department=dept, case_id=case_id, note=note), R.FollowUp, who)

    def rectify(self, who, case_id, note="已优化窗口排队流程，并向申请人致歉", dept=DEPT):
        R = rating_pb()
        return self.rpc(SVC + "RecordRectification", R.RecordRectificationRequest(
            department=dept, case_id=case_id, note=note), R.FollowUp, who)

    def public(self, department="", item_code=""):
        R = rating_pb()
        return self.rpc(SVC + "GetPublicResults", R.GetPublicResultsRequest(
            department=department, item_code=item_code), R.PublicResults, None)

    def fails(self, fn, code, reason):
        with self.assertRaises(grpc.RpcError) as cm:
            fn()
        self.assertRpcError(cm.exception, code, reason)
        return cm.exception

    def inbox(self, who):
        I = inbox_pb()
        return self.rpc(INBOX + "ListMessages", I.ListMessagesRequest(page_size=100),
                        I.ListMessagesResponse, who).messages

    def audit(self, count=200):
        entries = t.redis_cmd(self.srv.redis_url, "XREVRANGE", "fxb:audit", "+", "-", "COUNT",
                              count) or []
        out = []
        for _id, fields in entries:
            out.append({k.decode(): v.decode() for k, v in zip(fields[0::2], fields[1::2])})
        return out

    def delegated(self, agent, principal, scope):
        """Call metadata of agent acting for principal under an active grant
        holding scope (a grant written as ProxyService records it, the token
        signed with the server's key, as test_material.py makes them)."""
        gid = "g" + secrets.token_hex(12)
        now = self.clock(self._offset) if self._offset else int(time.time() * 1000)
        t.redis_cmd(self.srv.redis_url, "HSET", "{g:%s}:grant" % gid, "principal",
                    principal.account_id, "principal_kind", "person", "agent", agent.account_id,
                    "scope", scope, "status", "active", "initiated_by", "principal",
                    "valid_from_ms", now - 60000, "valid_until_ms", now + 3600000,
                    "notify_activity", "0")
        claims = t.jwt_decode(agent.access)[1]
        s = now // 1000
        token = t.forge_token(self.srv, base=claims, sub=principal.account_id,
                              act={"sub": agent.account_id}, grant_id=gid, scope=scope,
                              iat=s, nbf=s, exp=s + 300, auth_time=s, jti=uuid.uuid4().hex)
        return t.bearer(token)

    # --- applications --------------------------------------------------------------
    def person(self):
        """A fresh real-name (L2) applicant (signed in at the real time: the
        clock goes back first)."""
        if self._offset:
            self.clock(0)
        who, _ = self.people.l2_person()
        return who

    def draft(self, who, item=ITEM):
        F = filing_pb()
        return self.rpc(FILING + "CreateApplication", F.CreateApplicationRequest(
            item_code=item, idempotency_key=uuid.uuid4().hex), F.Application, who)

    def ended_application(self, who, item=ITEM):
        """An application of an immediate item, completed on submission (at
        the real time: the clock goes back first)."""
        if self._offset:
            self.clock(0)
        F, M = filing_pb(), material_pb()
        app = self.draft(who, item)
        upload = self.srv.stream_unary(MATERIAL + "UploadMaterial", M.UploadChunk, M.Material)
        mat = upload(iter([M.UploadChunk(header=M.UploadHeader(file_name="身份证.pdf")),
                           M.UploadChunk(data=PDF)]), metadata=self.md(who), timeout=20)
        self.rpc(FILING + "AttachMaterials", F.AttachMaterialsRequest(
            application_id=app.application_id, material_code="M01",
            material_ids=[mat.material_id]), F.Application, who)
        res = self.rpc(FILING + "SubmitApplication", F.SubmitApplicationRequest(
            application_id=app.application_id, idempotency_key=uuid.uuid4().hex),
            F.SubmitResult, who)
        self.assertEqual(res.outcome, F.SUBMIT_OUTCOME_COMPLETED, res)
        self.assertEqual(res.application.status, F.APPLICATION_STATUS_COMPLETED)
        return res.application.application_id

    def bad_rating_case(self, at_ms, level=DISSATISFIED):
        """(applicant, application id, FollowUp) of a real-name bad rating
        made at at_ms (the clock stays there)."""
        who = self.person()
        aid = self.ended_application(who)
        self.clock_at(at_ms)
        r = self.rate(who, aid, level, "窗口排队时间太长")
        self.assertTrue(r.real_name)
        self.assertTrue(r.HasField("follow_up"), r)
        return who, aid, r.follow_up

    # --- the rules -------------------------------------------------------------------
    def test_invitation_in_the_inbox_when_the_application_ends(self):
        who = self.person()
        aid = self.ended_application(who)
        invites = [m for m in self.inbox(who) if m.kind == "rating.invite"]
        self.assertEqual(len(invites), 1, invites)
        self.assertEqual(invites[0].ref, aid)
        self.assertIn("评价", invites[0].title + invites[0].body)

    def test_an_application_is_rated_once(self):
        who = self.person()
        aid = self.ended_application(who)
        before = t.redis_cmd(self.srv.redis_url, "HGET", "{a:%s}:app" % aid, "rated")
        self.assertIsNone(before)
        r = self.rate(who, aid, SATISFIED, "办理很快", attitude=5, efficiency=4)
        self.assertEqual(r.application_id, aid)
        self.assertEqual(r.level, SATISFIED)
        self.assertEqual((r.dimensions.attitude, r.dimensions.efficiency,
                          r.dimensions.convenience, r.dimensions.transparency), (5, 4, 0, 0))
        self.assertEqual(r.comment, "办理很快")
        self.assertTrue(r.real_name)
        self.assertFalse(r.HasField("follow_up"), "a good rating opens no case")
        self.assertGreater(r.rated_at_ms, 0)
        self.assertEqual(self.get_rating(who, aid), r)
        # the application reads as rated
        F = filing_pb()
        app = self.rpc(FILING + "GetApplication", F.GetApplicationRequest(application_id=aid),
                       F.Application, who)
        self.assertTrue(app.rated)
        # once: a second rating, even a different one, is refused
        self.fails(lambda: self.rate(who, aid, VERY_DISSATISFIED), EXISTS, "ALREADY_RATED")
        self.assertEqual(self.get_rating(who, aid).level, SATISFIED)

    def test_only_the_applicant_rates_or_reads_the_rating(self):
        who, other = self.person(), self.person()
        aid = self.ended_application(who)
        self.fails(lambda: self.rate(other, aid, SATISFIED), NOT_FOUND, "APPLICATION_NOT_FOUND")
        self.rate(who, aid, SATISFIED)
        self.fails(lambda: self.get_rating(other, aid), NOT_FOUND, "RATING_NOT_FOUND")

    def test_not_before_the_application_ends(self):
        who = self.person()
        app = self.draft(who)
        self.fails(lambda: self.rate(who, app.application_id, SATISFIED), PRECONDITION,
                   "APPLICATION_NOT_ENDED")
        self.fails(lambda: self.get_rating(who, app.application_id), NOT_FOUND,
                   "RATING_NOT_FOUND")

    def test_real_name_bad_rating_opens_a_case_with_call_back_due_one_working_day_later(self):
        # rated on Friday 2026-03-06: the call-back is due Monday 2026-03-09
        # at the end of the day; the rectification 15 working days later
        who, aid, f = self.bad_rating_case(cst_ms(2026, 3, 6, 16, 30))
        R = rating_pb()
        self.assertEqual(f.state, R.FOLLOW_UP_STATE_OPEN)
        self.assertEqual(f.application_id, aid)
        self.assertEqual(f.department, DEPT)
        self.assertEqual(f.item_code, ITEM)
        self.assertEqual(f.call_back_due_ms, end_of_day_ms(2026, 3, 9))
        self.assertEqual(f.rectify_due_ms, end_of_day_ms(2026, 3, 27))
        self.assertFalse(f.call_back_overdue or f.rectify_overdue)
        self.assertEqual(len(f.case_id), 22)
        # GetRating shows the case; the department's officers see it
        self.assertEqual(self.get_rating(who, aid).follow_up, f)
        listed = [x for x in self.all_follow_ups(self.officer) if x.case_id == f.case_id]
        self.assertEqual(listed, [f])
        # and an admin, for any department
        self.assertIn(f.case_id, [x.case_id for x in self.all_follow_ups(self.admin)])
        # the applicant is told the department will call back
        self.assertIn("rating.case", [m.kind for m in self.inbox(who) if m.ref == aid])
        # 非常不满意 opens one too
        _, _, f2 = self.bad_rating_case(cst_ms(2026, 3, 6, 9, 0), VERY_DISSATISFIED)
        self.assertEqual(f2.call_back_due_ms, end_of_day_ms(2026, 3, 9))

    def test_call_back_due_after_the_holiday_when_rated_before_it(self):
        # rated on Wednesday 2026-09-30: 1-7 October is the National Day
        # holiday, so the call-back is due Thursday 2026-10-08
        _, _, f = self.bad_rating_case(cst_ms(2026, 9, 30, 11, 0))
        self.assertEqual(f.call_back_due_ms, end_of_day_ms(2026, 10, 8))
        # rated on a rest day (Saturday 2026-03-07): due Monday
        _, _, f = self.bad_rating_case(cst_ms(2026, 3, 7, 11, 0))
        self.assertEqual(f.call_back_due_ms, end_of_day_ms(2026, 3, 9))

    def test_overdue_flags_when_the_clock_moves_past(self):
        who, aid, late = self.bad_rating_case(cst_ms(2026, 3, 6, 10, 0))
        _, _, timely = self.bad_rating_case(cst_ms(2026, 3, 9, 10, 0))
        self.assertEqual(timely.call_back_due_ms, end_of_day_ms(2026, 3, 10))
        # Tuesday 09:00: the first call-back is a day late, the second is not
        self.clock_at(cst_ms(2026, 3, 10, 9, 0))
        listed = self.all_follow_ups(self.officer)
        ids = [x.case_id for x in listed]
        self.assertLess(ids.index(late.case_id), ids.index(timely.case_id), "overdue first")
        first = listed[ids.index(late.case_id)]
        self.assertTrue(first.call_back_overdue)
        self.assertFalse(first.rectify_overdue)
        self.assertFalse(listed[ids.index(timely.case_id)].call_back_overdue)
        overdue = [x.case_id for x in self.all_follow_ups(self.officer, overdue_only=True)]
        self.assertIn(late.case_id, overdue)
        self.assertNotIn(timely.case_id, overdue)
        seen = set()
        for x in self.all_follow_ups(self.officer, overdue_only=True):
            self.assertTrue(x.call_back_overdue or x.rectify_overdue)
            self.assertNotIn(x.case_id, seen, "a case listed twice across pages")
            seen.add(x.case_id)
        # the applicant sees the flag too
        self.assertTrue(self.get_rating(who, aid).follow_up.call_back_overdue)
        # a late call-back stays flagged late
        f = self.call_back(self.officer, late.case_id)
        self.assertTrue(f.call_back_overdue)
        self.assertGreater(f.called_back_at_ms, f.call_back_due_ms)
        # past both rectifications' due dates (2026-03-27 and 2026-03-30)
        self.clock_at(cst_ms(2026, 3, 31, 9, 0))
        f = [x for x in self.all_follow_ups(self.officer, overdue_only=True)
             if x.case_id == late.case_id][0]
        self.assertTrue(f.rectify_overdue)
        t2 = [x for x in self.all_follow_ups(self.officer) if x.case_id == timely.case_id][0]
        self.assertTrue(t2.call_back_overdue and t2.rectify_overdue)

    def test_call_back_then_rectification_then_feedback_and_follow_up_rating(self):
        R = rating_pb()
        who, aid, f = self.bad_rating_case(cst_ms(2026, 3, 6, 10, 0))
        cid = f.case_id
        # nothing to rate before the case is closed; no rectification before
        # the call-back
        self.fails(lambda: self.rate_follow_up(who, aid, SATISFIED), PRECONDITION,
                   "FOLLOW_UP_NOT_CLOSED")
        self.fails(lambda: self.rectify(self.officer, cid), PRECONDITION, "CALL_BACK_FIRST")
        # the call-back, within the day
        self.clock_at(cst_ms(2026, 3, 9, 15, 0))
        f = self.call_back(self.officer, cid, "已回访申请人，情况属实")
        self.assertEqual(f.state, R.FOLLOW_UP_STATE_CALLED_BACK)
        self.assertEqual(f.call_back_note, "已回访申请人，情况属实")
        self.assertFalse(f.call_back_overdue)
        self.assertGreater(f.called_back_at_ms, 0)
        self.fails(lambda: self.call_back(self.officer, cid), PRECONDITION, "FOLLOW_UP_STATE")
        self.fails(lambda: self.rate_follow_up(who, aid, SATISFIED), PRECONDITION,
                   "FOLLOW_UP_NOT_CLOSED")
        # the rectification closes it and feeds back to the applicant
        note = "已增设自助打印终端，排队时间缩短至5分钟以内"
        self.clock_at(cst_ms(2026, 3, 12, 10, 0))
        f = self.rectify(self.officer, cid, note)
        self.assertEqual(f.state, R.FOLLOW_UP_STATE_CLOSED)
        self.assertEqual(f.rectification_note, note)
        self.assertFalse(f.call_back_overdue or f.rectify_overdue)
        self.fails(lambda: self.rectify(self.officer, cid), PRECONDITION, "FOLLOW_UP_STATE")
        self.fails(lambda: self.call_back(self.officer, cid), PRECONDITION, "FOLLOW_UP_STATE")
        feedback = [m for m in self.inbox(who) if m.kind == "rating.followup"]
        self.assertEqual(len(feedback), 1)
        self.assertEqual(feedback[0].ref, aid)
        self.assertIn(note, feedback[0].body)
        self.assertIn("评价", feedback[0].title)
        # closed cases leave the open list and appear under CLOSED
        self.assertNotIn(cid, [x.case_id for x in self.all_follow_ups(self.officer)])
        closed = self.all_follow_ups(self.officer, state=R.FOLLOW_UP_STATE_CLOSED)
        self.assertIn(cid, [x.case_id for x in closed])
        # the applicant rates the follow-up, once
        r = self.rate_follow_up(who, aid, SATISFIED, "整改及时")
        self.assertEqual(r.follow_up.follow_up_level, SATISFIED)
        self.assertEqual(r.follow_up.state, R.FOLLOW_UP_STATE_CLOSED)
        self.assertEqual(r.level, DISSATISFIED, "the first rating stays as it was")
        self.fails(lambda: self.rate_follow_up(who, aid, VERY_SATISFIED), EXISTS,
                   "ALREADY_RATED")
        self.assertEqual(self.get_rating(who, aid).follow_up.follow_up_level, SATISFIED)
        # both officer acts are audited, with ids only
        acts = [e for e in self.audit() if cid in e.get("why", "")]
        self.assertEqual(sorted(e["action"] for e in acts),
                         ["rating.call_back", "rating.rectify"])
        for e in acts:
            self.assertEqual(e["actor"], self.officer.account_id)
            self.assertEqual(e["subject"], who.account_id)
            self.assertNotIn(note, e["why"])

    def test_a_long_feedback_is_cut_in_the_notice_but_kept_whole(self):
        who, aid, f = self.bad_rating_case(cst_ms(2026, 3, 6, 10, 0))
        self.call_back(self.officer, f.case_id)
        note = "整" * 500  # 1500 bytes: more than a notice body holds
        self.assertEqual(self.rectify(self.officer, f.case_id, note).rectification_note, note)
        [m] = [m for m in self.inbox(who) if m.kind == "rating.followup"]
        self.assertLessEqual(len(m.body.encode("utf-8")), 1000)
        self.assertIn("整" * 100, m.body)
        self.assertIn("详见评价详情", m.body)
        self.assertEqual(self.get_rating(who, aid).follow_up.rectification_note, note)

    def test_rating_a_follow_up_needs_a_case(self):
        who = self.person()
        aid = self.ended_application(who)
        self.rate(who, aid, BASIC)
        self.fails(lambda: self.rate_follow_up(who, aid, SATISFIED), NOT_FOUND,
                   "FOLLOW_UP_NOT_FOUND")
        self.fails(lambda: self.rate_follow_up(self.person(), aid, SATISFIED), NOT_FOUND,
                   "RATING_NOT_FOUND")

    def test_a_bad_rating_without_real_name_opens_no_case(self):
        who = self.person()
        aid = self.ended_application(who)
        t.set_level(self.srv, who, 1)  # the token now carries acr 1
        before = self.public(department=DEPT)
        r = self.rate(who, aid, VERY_DISSATISFIED, "太慢了")
        self.assertFalse(r.real_name)
        self.assertFalse(r.HasField("follow_up"))
        self.assertFalse(self.get_rating(who, aid).HasField("follow_up"))
        after = self.public(department=DEPT)
        self.assertEqual(after.total, before.total + 1)
        self.assertEqual(after.by_level[4], before.by_level[4] + 1)
        self.assertEqual(after.follow_ups_opened, before.follow_ups_opened)
        self.assertNotIn(aid, [x.application_id for x in self.all_follow_ups(self.officer)])

    def test_public_results_aggregate_without_personal_data(self):
        late_at = cst_ms(2026, 3, 10, 9, 0)
        self.clock_at(late_at)
        base_item = self.public(item_code=PUBLIC_ITEM)
        base_dept = self.public(department=DEPT)
        self.clock(0)
        people = [self.person() for _ in range(4)]
        apps = [self.ended_application(p, PUBLIC_ITEM) for p in people]
        comments = ["很满意，窗口人员耐心", "满意", "基本满意", "不满意，等了很久"]
        levels = [VERY_SATISFIED, SATISFIED, BASIC, DISSATISFIED]
        dims = [dict(attitude=5, efficiency=5), dict(attitude=4), dict(), dict(attitude=1)]
        self.clock_at(cst_ms(2026, 3, 6, 10, 0))
        for p, aid, lv, c, d in zip(people, apps, levels, comments, dims):
            self.rate(p, aid, lv, c, **d)
        self.clock_at(late_at)
        # public: no token needed
        res = self.public(item_code=PUBLIC_ITEM)
        self.assertEqual(res.item_code, PUBLIC_ITEM)
        self.assertEqual(res.department, "")
        self.assertEqual(res.total, base_item.total + 4)
        self.assertEqual(len(res.by_level), 5)
        base_levels = list(base_item.by_level) or [0] * 5
        self.assertEqual([a - b for a, b in zip(res.by_level, base_levels)], [1, 1, 1, 1, 0])
        self.assertAlmostEqual(res.satisfaction_percent,
                               100.0 * sum(res.by_level[:3]) / res.total)
        self.assertEqual(res.follow_ups_opened, base_item.follow_ups_opened + 1)
        self.assertEqual(res.follow_ups_overdue, base_item.follow_ups_overdue + 1,
                         "the case's call-back was due yesterday")
        if base_item.total == 0:
            self.assertAlmostEqual(res.mean_attitude, (5 + 4 + 1) / 3)
            self.assertAlmostEqual(res.mean_efficiency, 5.0)
            self.assertEqual(res.mean_convenience, 0.0)
            self.assertAlmostEqual(res.satisfaction_percent, 75.0)
        dept = self.public(department=DEPT)
        self.assertEqual(dept.department, DEPT)
        self.assertEqual(dept.total, base_dept.total + 4)
        self.assertGreaterEqual(dept.follow_ups_overdue, base_dept.follow_ups_overdue + 1)
        # nothing personal: no ids, phones or words of the raters
        raw = res.SerializeToString() + dept.SerializeToString()
        for p, aid, c in zip(people, apps, comments):
            for secret in (p.account_id, p.phone, aid, c):
                self.assertNotIn(secret.encode("utf-8"), raw)
        # exactly one of department and item_code
        self.fails(lambda: self.public(), INVALID, "DEPARTMENT_OR_ITEM_REQUIRED")
        self.fails(lambda: self.public(DEPT, PUBLIC_ITEM), INVALID, "DEPARTMENT_OR_ITEM_REQUIRED")
        self.fails(lambda: self.public(department="Bad Dept"), INVALID, "DEPARTMENT_INVALID")
        self.fails(lambda: self.public(item_code="x" * 41), INVALID, "ITEM_CODE_INVALID")
        # an item nobody rated: zeros
        empty = self.public(item_code="XX-NO-RATINGS")
        self.assertEqual((empty.total, empty.satisfaction_percent, empty.follow_ups_overdue),
                         (0, 0.0, 0))

    def test_another_departments_officer_is_refused(self):
        _, _, f = self.bad_rating_case(cst_ms(2026, 3, 6, 10, 0))
        # naming the other department: the runtime refuses
        self.fails(lambda: self.follow_ups(self.other_officer, DEPT), DENIED,
                   "DEPARTMENT_MISMATCH")
        self.fails(lambda: self.call_back(self.other_officer, f.case_id, dept=DEPT), DENIED,
                   "DEPARTMENT_MISMATCH")
        # naming their own department for a case of another: the case says no
        self.fails(lambda: self.call_back(self.other_officer, f.case_id, dept=OTHER_DEPT),
                   DENIED, "DEPARTMENT_MISMATCH")
        self.fails(lambda: self.rectify(self.other_officer, f.case_id, dept=OTHER_DEPT), DENIED,
                   "DEPARTMENT_MISMATCH")
        self.assertNotIn(f.case_id,
                         [x.case_id for x in self.all_follow_ups(self.other_officer, OTHER_DEPT)])
        # citizens are no officers; nobody unsigned
        self.fails(lambda: self.follow_ups(self.person(), DEPT), DENIED, "ROLE_REQUIRED")
        self.fails(lambda: self.follow_ups(None, DEPT), UNAUTH, "TOKEN_MISSING")
        # the case is untouched
        still = [x for x in self.all_follow_ups(self.officer) if x.case_id == f.case_id]
        self.assertEqual(still[0].state, rating_pb().FOLLOW_UP_STATE_OPEN)

    def test_a_proxy_rates_within_its_grant_at_its_own_level(self):
        R = rating_pb()
        principal = self.person()
        apps = [self.ended_application(principal) for _ in range(3)]

        def rate_as(md, aid, level):
            req = R.RateApplicationRequest(application_id=aid, level=level)
            return self.srv.unary(SVC + "RateApplication", R.RateApplicationRequest, R.Rating)(
                req, metadata=md, timeout=20)

        l1_agent = t.sign_in(self.srv)
        # outside the grant's items, or without filing.submit: refused
        self.fails(lambda: rate_as(self.delegated(l1_agent, principal,
                                                  "filing.submit item:XX-GA-0005"),
                                   apps[0], SATISFIED), DENIED, "OUT_OF_SCOPE")
        self.fails(lambda: rate_as(self.delegated(l1_agent, principal,
                                                  "filing.read item:" + ITEM),
                                   apps[0], SATISFIED), DENIED, "OUT_OF_SCOPE")
        # an L1 agent's bad rating is not real-name: no case
        r = rate_as(self.delegated(l1_agent, principal, "filing.submit item:" + ITEM), apps[0],
                    VERY_DISSATISFIED)
        self.assertFalse(r.real_name)
        self.assertFalse(r.HasField("follow_up"))
        self.assertEqual(t.redis_cmd(self.srv.redis_url, "HGET", "{a:%s}:rating" % apps[0],
                                     "rated_by"), l1_agent.account_id.encode())
        # a real-name agent's is: the case is the principal's
        l2_agent = self.person()
        self.clock_at(cst_ms(2026, 3, 6, 10, 0))
        md = self.delegated(l2_agent, principal, "filing.submit item:" + ITEM)
        r = rate_as(md, apps[1], DISSATISFIED)
        self.assertTrue(r.real_name)
        self.assertEqual(r.follow_up.call_back_due_ms, end_of_day_ms(2026, 3, 9))
        self.assertEqual(self.get_rating(principal, apps[1]).follow_up, r.follow_up)
        # the agent's own account has no such application
        self.fails(lambda: self.rate(l2_agent, apps[2], SATISFIED), NOT_FOUND,
                   "APPLICATION_NOT_FOUND")

    def test_bad_inputs_are_refused_with_status_and_reason(self):
        who = self.person()
        aid = self.ended_application(who)
        R = rating_pb()
        self.fails(lambda: self.rate(who, aid, 0), INVALID, "RATING_LEVEL_REQUIRED")
        self.fails(lambda: self.rate(who, aid, 9), INVALID, "RATING_LEVEL_INVALID")
        for dim in ("attitude", "efficiency", "convenience", "transparency"):
            self.fails(lambda: self.rate(who, aid, SATISFIED, **{dim: 6}), INVALID,
                       "DIMENSION_INVALID")
        self.fails(lambda: self.rate(who, aid, SATISFIED, "好" * 501), INVALID, "COMMENT_INVALID")
        self.fails(lambda: self.rate(who, aid, SATISFIED, "第一行\n第二行"), INVALID,
                   "COMMENT_INVALID")
        self.fails(lambda: self.rate(who, aid, SATISFIED, "bidi \u202e text"), INVALID,
                   "COMMENT_INVALID")
        # invalid UTF-8 on the wire (protobuf-c does not check it)
        raw = self.srv.channel.unary_unary(SVC + "RateApplication",
                                           request_serializer=lambda b: b,
                                           response_deserializer=R.Rating.FromString)
        aid_b = aid.encode()
        body = (b"\x0a" + bytes([len(aid_b)]) + aid_b + b"\x10\x02" + b"\x22\x03a\xffb")
        with self.assertRaises(grpc.RpcError) as cm:
            raw(body, metadata=self.md(who), timeout=20)
        self.assertRpcError(cm.exception, INVALID, "COMMENT_INVALID")
        self.fails(lambda: self.rate(who, "short", SATISFIED), INVALID, "APPLICATION_ID_INVALID")
        self.fails(lambda: self.rate(who, "A" * 22, SATISFIED), NOT_FOUND,
                   "APPLICATION_NOT_FOUND")
        self.fails(lambda: self.get_rating(who, "bad id"), INVALID, "APPLICATION_ID_INVALID")
        self.fails(lambda: self.rate_follow_up(who, aid, 0), INVALID, "RATING_LEVEL_REQUIRED")
        # none of that rated it: 500 characters exactly is a valid comment
        r = self.rate(who, aid, BASIC, "好" * 500, attitude=1, transparency=5)
        self.assertEqual(len(r.comment), 500)
        # officers' inputs
        self.fails(lambda: self.call_back(self.officer, "A" * 22, ""), INVALID, "NOTE_INVALID")
        self.fails(lambda: self.call_back(self.officer, "A" * 22, "记" * 501), INVALID,
                   "NOTE_INVALID")
        self.fails(lambda: self.call_back(self.officer, "no-such", "已回访"), INVALID,
                   "CASE_ID_INVALID")
        self.fails(lambda: self.call_back(self.officer, "A" * 22, "已回访"), NOT_FOUND,
                   "FOLLOW_UP_NOT_FOUND")
        self.fails(lambda: self.rectify(self.officer, "A" * 22, "已整改"), NOT_FOUND,
                   "FOLLOW_UP_NOT_FOUND")
        self.fails(lambda: self.follow_ups(self.officer, page_size=101), INVALID,
                   "PAGE_SIZE_INVALID")
        self.fails(lambda: self.follow_ups(self.officer, page_token="junk"), INVALID,
                   "PAGE_TOKEN_INVALID")
        self.fails(lambda: self.follow_ups(self.admin, dept=""), INVALID, "DEPARTMENT_INVALID")
        self.fails(lambda: self.follow_ups(self.officer, state=7), INVALID,
                   "FOLLOW_UP_STATE_INVALID")


if __name__ == "__main__":
    t.main()
