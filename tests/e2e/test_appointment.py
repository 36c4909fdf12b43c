"""fxb.v1.AppointmentService end to end (regulation art. 26, 27): hall
visits in half-hour slots (09:00-12:00, 13:30-17:00 China time) on working
days, 6 general + 2 green-channel places per slot and department, booked at
most 10 working days ahead; at most 3 upcoming appointments per subject and
one per item per day; the green channel for the elderly (65+ by the
verified birth date), soldiers and the disabled (`fxb-admin green set`).

The development clock (DiagService/SetClockOffset) puts "today" on Friday
2026-02-13, before the Spring Festival: the next working days are Saturday
02-14 (a make-up working day), then 02-24 (02-15..02-23 are holidays).
People are made while the clock is real (their sessions expire by the real
clock), then the clock moves and their tokens are re-signed with the
server's times, as test_proxy.py does. Delegated tokens are made as
test_material.py makes them (a grant record written as ProxyService writes
it); how grants are made is test_proxy.py's business. Each test books in
its own department / slot so the free counts it checks are its own; the
departments' counters are cleared at the start of the class, so the file may
run again against the same Redis."""
import datetime
import random
import secrets
import uuid

import grpc

import fxbtest as t
from people import People, make_id

SVC = "/fxb.v1.AppointmentService/"
DIAG = "/fxb.v1.DiagService/"
INBOX = "/fxb.v1.InboxService/"

INVALID = grpc.StatusCode.INVALID_ARGUMENT
NOT_FOUND = grpc.StatusCode.NOT_FOUND
PRECONDITION = grpc.StatusCode.FAILED_PRECONDITION
EXHAUSTED = grpc.StatusCode.RESOURCE_EXHAUSTED
EXISTS = grpc.StatusCode.ALREADY_EXISTS
DENIED = grpc.StatusCode.PERMISSION_DENIED
UNAUTHENTICATED = grpc.StatusCode.UNAUTHENTICATED

CST = datetime.timezone(datetime.timedelta(hours=8))
FRIDAY = 20260213  # before the Spring Festival 2026
SLOT_TIMES = ["09:00", "09:30", "10:00", "10:30", "11:00", "11:30",
              "13:30", "14:00", "14:30", "15:00", "15:30", "16:00", "16:30"]
GENERAL, GREEN = 6, 2
# Xinxiang's districts and counties (ID number regions)
DISTRICTS = ("410702", "410703", "410704", "410711", "410721", "410724", "410725", "410726",
             "410727", "410781", "410782", "410783")
RNG = random.SystemRandom()


def appt_pb():
    return t.pb("fxb/v1/appointment")


def inbox_pb():
    return t.pb("fxb/v1/inbox")


def ms(date, hhmm="00:00"):
    """UTC epoch ms of date (yyyymmdd) at hh:mm China time."""
    d = datetime.datetime(date // 10000, date // 100 % 100, date % 100,
                          int(hhmm[:2]), int(hhmm[3:]), tzinfo=CST)
    return int(d.timestamp() * 1000)


def date_of(epoch_ms):
    d = datetime.datetime.fromtimestamp(epoch_ms / 1000, CST)
    return d.year * 10000 + d.month * 100 + d.day


def hhmm_of(epoch_ms):
    return datetime.datetime.fromtimestamp(epoch_ms / 1000, CST).strftime("%H:%M")


def born_1950():
    """A birth date in 1950: 75 or 76 on the test days, elderly."""
    return "1950%02d%02d" % (RNG.randrange(1, 13), RNG.randrange(1, 29))


def masked(phone):
    return phone[:3] + "****" + phone[-4:]


class AppointmentTest(t.TestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.srv = t.Server(extra_env=t.AUTH_ENV).__enter__()
        cls.people = People(cls.srv)
        for what in ("catalog", "calendar"):
            t.run_admin([what, "import"], redis_url=cls.srv.redis_url,
                        env={"FXB_DATA_DIR": cls.srv.env["FXB_DATA_DIR"]}, check=True)
        # the halls' counters of an earlier run of this file on this Redis
        cursor = b"0"
        while True:
            cursor, keys = t.redis_cmd(cls.srv.redis_url, "SCAN", cursor, "MATCH", "{hall:*",
                                       "COUNT", 1000)
            if keys:
                t.redis_cmd(cls.srv.redis_url, "DEL", *keys)
            if cursor == b"0":
                break

    @classmethod
    def tearDownClass(cls):
        cls.srv.__exit__(None, None, None)

    def tearDown(self):
        # tests share the server: never leave its clock moved
        self.set_clock(0)

    # --- the clock and tokens ---------------------------------------------------
    def set_clock(self, offset_ms):
        d = t.diag_pb()
        fn = self.srv.unary(DIAG + "SetClockOffset", d.SetClockOffsetRequest,
                            d.SetClockOffsetResponse)
        r = fn(d.SetClockOffsetRequest(offset_ms=offset_ms), timeout=20)
        self.offset = offset_ms
        return r.now_ms

    def at(self, date=FRIDAY, hhmm="08:00"):
        """Moves the server's clock to date hh:mm China time."""
        real = self.set_clock(0)
        now = self.set_clock(ms(date, hhmm) - real)
        self.assertLess(abs(now - ms(date, hhmm)), 5000)

    def server_now_s(self):
        return self.set_clock(getattr(self, "offset", 0)) // 1000

    def md(self, who, **over):
        """Metadata for who (a SignedIn) with its token's claims re-signed
        with the server's clock."""
        now = self.server_now_s()
        claims = t.jwt_decode(who.access)[1]
        c = dict(iat=now, nbf=now, exp=now + 600, auth_time=now, jti=uuid.uuid4().hex)
        c.update(over)
        return t.bearer(t.forge_token(self.srv, base=claims, **c))

    def delegated(self, agent, principal, scope):
        """Metadata of agent acting for principal (an account id) under an
        active grant holding scope (a list of words), by the server's clock."""
        gid = "g" + secrets.token_hex(12)
        words = " ".join(sorted(set(scope)))
        now_ms = self.server_now_s() * 1000
        t.redis_cmd(self.srv.redis_url, "HSET", "{g:%s}:grant" % gid, "principal", principal,
                    "principal_kind", "person", "agent", agent.account_id, "scope", words,
                    "status", "active", "initiated_by", "principal",
                    "valid_from_ms", now_ms - 60000, "valid_until_ms", now_ms + 3600000,
                    "notify_activity", "0")
        return self.md(agent, sub=principal, act={"sub": agent.account_id}, grant_id=gid,
                       scope=words)

    # --- people ------------------------------------------------------------------
    def person(self, level, birth):
        """A fresh person verified to level, born on birth (yyyymmdd), or on a
        random date of 1970..1999 (never elderly). The ID number's district
        varies too: fixed birth dates would otherwise repeat ID numbers over
        runs against the same Redis (one person, one account)."""
        birth = birth or "%04d%02d%02d" % (RNG.randrange(1970, 2000), RNG.randrange(1, 13),
                                           RNG.randrange(1, 29))
        who = self.people.sign_in()
        name, idn = self.people.register(idn=make_id(RNG.choice(DISTRICTS), birth))
        return self.people.verify(who, name, idn, level)

    def l2(self, birth=None):
        return self.person(2, birth)

    def l3(self, birth=None):
        return self.person(3, birth)

    def green(self, who, kind, off=False, env=None):
        e = {"FXB_DATA_DIR": self.srv.env["FXB_DATA_DIR"]}
        e.update(env or {})
        return t.run_admin(["green", "set", "--phone", who.phone, "--kind", kind] +
                           (["--off"] if off else []), redis_url=self.srv.redis_url, env=e)

    # --- calls -------------------------------------------------------------------
    def call(self, method, req, md=None):
        A = appt_pb()
        resp = {"ListSlots": A.ListSlotsResponse, "ListAppointments": A.ListAppointmentsResponse}
        return self.srv.unary(SVC + method, type(req), resp.get(method, A.Appointment))(
            req, metadata=md, timeout=20)

    def slots(self, item, from_date=0, days=0):
        return self.call("ListSlots", appt_pb().ListSlotsRequest(item_code=item,
                                                                 from_date=from_date, days=days))

    def slot(self, item, date, hhmm):
        """The listed Slot of item's hall starting at date hh:mm."""
        for s in self.slots(item, from_date=date, days=1).slots:
            if s.start_ms == ms(date, hhmm):
                return s
        self.fail("no slot %d %s listed for %s" % (date, hhmm, item))

    def book(self, who, item, date, hhmm, green=False, application_id="", md=None):
        req = appt_pb().BookAppointmentRequest(item_code=item, slot_start_ms=ms(date, hhmm),
                                               green_channel=green,
                                               application_id=application_id)
        return self.call("BookAppointment", req, md or self.md(who))

    def mine(self, who, md=None):
        return self.call("ListAppointments", appt_pb().ListAppointmentsRequest(),
                         md or self.md(who)).appointments

    def cancel(self, who, aid, md=None):
        return self.call("CancelAppointment",
                         appt_pb().CancelAppointmentRequest(appointment_id=aid),
                         md or self.md(who))

    def inbox(self, md):
        i = inbox_pb()
        return self.srv.unary(INBOX + "ListMessages", i.ListMessagesRequest,
                              i.ListMessagesResponse)(i.ListMessagesRequest(page_size=100),
                                                      metadata=md, timeout=20).messages

    def fails(self, fn, code, reason):
        return self.assertCallFails(fn, code, reason)

    # --- slots ---------------------------------------------------------------------
    def test_slots_skip_holidays_and_include_make_up_working_days(self):
        self.at(FRIDAY, "08:00")
        resp = self.slots("XX-JT-0001", days=3)
        self.assertEqual(resp.department, "xx-transport")
        by_day = {}
        for s in resp.slots:
            by_day.setdefault(date_of(s.start_ms), []).append(s)
        # Friday, the make-up Saturday 02-14, then 02-24 after the holidays
        self.assertEqual(sorted(by_day), [20260213, 20260214, 20260224])
        for day, slots in by_day.items():
            self.assertEqual([hhmm_of(s.start_ms) for s in slots], SLOT_TIMES)
            for s in slots:
                self.assertEqual(s.end_ms - s.start_ms, 30 * 60 * 1000)
                self.assertEqual((s.free, s.green_free), (GENERAL, GREEN))
        # 0 = 5 working days; from a holiday, the next working days
        days = sorted({date_of(s.start_ms) for s in self.slots("XX-JT-0001").slots})
        self.assertEqual(days, [20260213, 20260214, 20260224, 20260225, 20260226])
        days = sorted({date_of(s.start_ms) for s in self.slots("XX-JT-0001", 20260215, 2).slots})
        self.assertEqual(days, [20260224, 20260225])
        # a Sunday that is no make-up day has no slots: 02-28 (Sat) works, 03-01 not
        days = sorted({date_of(s.start_ms) for s in self.slots("XX-JT-0001", 20260227, 3).slots})
        self.assertEqual(days, [20260227, 20260228, 20260302])

    def test_only_future_slots_are_listed(self):
        self.at(FRIDAY, "10:10")
        slots = [s for s in self.slots("XX-JT-0001", days=1).slots]
        self.assertEqual([hhmm_of(s.start_ms) for s in slots], SLOT_TIMES[3:])
        self.assertTrue(all(date_of(s.start_ms) == FRIDAY for s in slots))
        # after the last slot began, today is not among the days
        self.at(FRIDAY, "16:31")
        days = sorted({date_of(s.start_ms) for s in self.slots("XX-JT-0001", days=2).slots})
        self.assertEqual(days, [20260214, 20260224])

    def test_slots_lie_at_most_10_working_days_ahead(self):
        who = self.l2()
        self.at(FRIDAY, "08:00")
        # working days after Friday: 02-14, 02-24..02-28, 03-02..03-05 (the 10th)
        days = sorted({date_of(s.start_ms) for s in self.slots("XX-JT-0001", days=10).slots})
        self.assertEqual(days, [20260213, 20260214, 20260224, 20260225, 20260226, 20260227,
                                20260228, 20260302, 20260303, 20260304])
        days = sorted({date_of(s.start_ms) for s in self.slots("XX-JT-0001", 20260304, 5).slots})
        self.assertEqual(days, [20260304, 20260305])
        self.assertEqual(self.book(who, "XX-JT-0001", 20260305, "16:30").state,
                         appt_pb().APPOINTMENT_STATE_BOOKED)
        self.fails(lambda: self.book(who, "XX-JT-0001", 20260306, "09:00"), INVALID,
                   "SLOT_TOO_FAR")

    def test_a_year_without_calendar_data_is_calendar_year_missing(self):
        if t.redis_cmd(self.srv.redis_url, "EXISTS", "fxb:calendar:2027"):
            self.skipTest("this Redis holds a calendar for 2027")
        who = self.l2()
        self.at(20261224, "08:00")  # 10 working days ahead reach into 2027
        self.fails(lambda: self.slots("XX-JT-0001"), PRECONDITION, "CALENDAR_YEAR_MISSING")
        self.fails(lambda: self.book(who, "XX-JT-0001", 20261225, "09:00"), PRECONDITION,
                   "CALENDAR_YEAR_MISSING")

    # --- booking -------------------------------------------------------------------
    def test_book_takes_a_general_place_lists_it_and_notifies_the_inbox(self):
        who = self.l2()
        self.at(FRIDAY, "08:00")
        a = self.book(who, "XX-SW-0001", 20260224, "09:00", application_id="app-42")
        A = appt_pb()
        self.assertTrue(a.appointment_id)
        self.assertEqual((a.item_code, a.department, a.slot_start_ms, a.slot_end_ms,
                          a.green_channel, a.green_reason, a.state, a.application_id),
                         ("XX-SW-0001", "xx-tax", ms(20260224, "09:00"), ms(20260224, "09:30"),
                          False, "", A.APPOINTMENT_STATE_BOOKED, "app-42"))
        self.assertLess(abs(a.booked_at_ms - ms(FRIDAY, "08:00")), 60000)
        s = self.slot("XX-SW-0001", 20260224, "09:00")
        self.assertEqual((s.free, s.green_free), (GENERAL - 1, GREEN))
        self.assertEqual(list(self.mine(who)), [a])
        notes = [m for m in self.inbox(self.md(who)) if m.kind == "appointment.booked"]
        self.assertEqual([m.ref for m in notes], [a.appointment_id])
        self.assertIn("09:00", notes[0].body)
        # the keys of the subject share its hash tag; the hall's counters expire
        uid = who.account_id
        self.assertEqual(t.redis_cmd(self.srv.redis_url, "ZSCORE", "{u:%s}:appts" % uid,
                                     a.appointment_id), str(a.slot_start_ms).encode())
        self.assertEqual(t.redis_cmd(self.srv.redis_url, "HGET",
                                     "{u:%s}:appt:%s" % (uid, a.appointment_id), "state"),
                         b"booked")
        self.assertGreater(t.redis_cmd(self.srv.redis_url, "PTTL",
                                       "{hall:xx-tax}:slots:20260224"), 0)

    def test_a_full_slot_is_slot_full_and_the_green_places_stay_for_the_green_channel(self):
        ordinary = [self.l2() for _ in range(GENERAL + 1)]
        elderly = [self.l3(birth=born_1950()) for _ in range(GREEN + 1)]
        self.at(FRIDAY, "08:00")
        for who in ordinary[:GENERAL]:
            self.book(who, "XX-GA-0001", 20260225, "10:00")
        s = self.slot("XX-GA-0001", 20260225, "10:00")
        self.assertEqual((s.free, s.green_free), (0, GREEN))
        self.fails(lambda: self.book(ordinary[GENERAL], "XX-GA-0001", 20260225, "10:00"),
                   PRECONDITION, "SLOT_FULL")
        # an ordinary applicant cannot reach the green places
        self.fails(lambda: self.book(ordinary[GENERAL], "XX-GA-0001", 20260225, "10:00",
                                     green=True), PRECONDITION, "GREEN_CHANNEL_NOT_ELIGIBLE")
        for who in elderly[:GREEN]:
            a = self.book(who, "XX-GA-0001", 20260225, "10:00", green=True)
            self.assertEqual((a.green_channel, a.green_reason), (True, "elderly"))
        s = self.slot("XX-GA-0001", 20260225, "10:00")
        self.assertEqual((s.free, s.green_free), (0, 0))
        self.fails(lambda: self.book(elderly[GREEN], "XX-GA-0001", 20260225, "10:00",
                                     green=True), PRECONDITION, "SLOT_FULL")
        # the next slot is untouched
        s = self.slot("XX-GA-0001", 20260225, "10:30")
        self.assertEqual((s.free, s.green_free), (GENERAL, GREEN))

    def test_green_channel_for_the_elderly(self):
        who = self.l3(birth=born_1950())
        self.at(FRIDAY, "08:00")
        a = self.book(who, "XX-YB-0001", 20260224, "10:00", green=True)
        self.assertEqual((a.green_channel, a.green_reason), (True, "elderly"))
        s = self.slot("XX-YB-0001", 20260224, "10:00")
        self.assertEqual((s.free, s.green_free), (GENERAL, GREEN - 1))
        # without asking, an elderly applicant takes a general place
        b = self.book(who, "XX-YB-0001", 20260225, "10:00")
        self.assertEqual((b.green_channel, b.green_reason), (False, ""))
        s = self.slot("XX-YB-0001", 20260225, "10:00")
        self.assertEqual((s.free, s.green_free), (GENERAL - 1, GREEN))

    def test_elderly_means_65_or_older_by_the_china_date(self):
        turns_65_today = self.l2(birth="19610213")
        turns_65_tomorrow = self.l2(birth="19610214")
        self.at(FRIDAY, "08:00")
        a = self.book(turns_65_today, "XX-YB-0001", 20260226, "09:00", green=True)
        self.assertEqual(a.green_reason, "elderly")
        self.fails(lambda: self.book(turns_65_tomorrow, "XX-YB-0001", 20260226, "09:00",
                                     green=True), PRECONDITION, "GREEN_CHANNEL_NOT_ELIGIBLE")
        # China date: at 23:30 UTC on the 13th it is already the 14th in Xinxiang
        self.at(20260214, "07:30")
        b = self.book(turns_65_tomorrow, "XX-YB-0001", 20260226, "09:00", green=True)
        self.assertEqual(b.green_reason, "elderly")

    def test_green_channel_for_soldiers_and_the_disabled_recorded_by_fxb_admin(self):
        soldier, disabled = self.l2(), self.l2()
        self.at(FRIDAY, "08:00")
        self.fails(lambda: self.book(soldier, "XX-WJ-0001", 20260224, "14:00", green=True),
                   PRECONDITION, "GREEN_CHANNEL_NOT_ELIGIBLE")
        r = self.green(soldier, "soldier")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn(masked(soldier.phone), r.stdout)
        self.assertNotIn(soldier.phone, r.stdout + r.stderr)
        self.assertEqual(t.redis_cmd(self.srv.redis_url, "HGET",
                                     "fxb:green:%s" % soldier.account_id, "soldier"), b"1")
        a = self.book(soldier, "XX-WJ-0001", 20260224, "14:00", green=True)
        self.assertEqual((a.green_channel, a.green_reason), (True, "soldier"))
        # departments report in production too
        r = self.green(disabled, "disabled", env={"FXB_ENV": "production"})
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertNotIn(disabled.phone, r.stdout + r.stderr)
        a = self.book(disabled, "XX-WJ-0001", 20260224, "14:00", green=True)
        self.assertEqual((a.green_channel, a.green_reason), (True, "disabled"))
        s = self.slot("XX-WJ-0001", 20260224, "14:00")
        self.assertEqual((s.free, s.green_free), (GENERAL, 0))
        # --off clears it
        r = self.green(soldier, "soldier", off=True)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.fails(lambda: self.book(soldier, "XX-WJ-0001", 20260225, "14:00", green=True),
                   PRECONDITION, "GREEN_CHANNEL_NOT_ELIGIBLE")

    def test_fxb_admin_green_refuses_bad_arguments_and_unknown_phones(self):
        base = ["green", "set"]
        env = {"FXB_DATA_DIR": self.srv.env["FXB_DATA_DIR"]}
        for args, rc in ((["--phone", "13800000000", "--kind", "elderly"], 2),
                         (["--phone", "13800000000"], 2),
                         (["--kind", "soldier"], 2),
                         (["--phone", "not-a-phone", "--kind", "soldier"], 2),
                         (["--phone", t.random_phone(), "--kind", "soldier"], 1)):
            r = t.run_admin(base + args, redis_url=self.srv.redis_url, env=env)
            self.assertEqual(r.returncode, rc, (args, r.stdout, r.stderr))
        r = t.run_admin(["green", "show"], redis_url=self.srv.redis_url, env=env)
        self.assertEqual(r.returncode, 2)

    # --- limits ------------------------------------------------------------------------
    def test_at_most_3_upcoming_appointments_per_subject(self):
        who = self.l2()
        self.at(FRIDAY, "08:00")
        made = [self.book(who, item, 20260226, "15:00")
                for item in ("XX-SD-0001", "XX-SD-0002", "XX-SD-0003")]
        self.fails(lambda: self.book(who, "XX-SD-0004", 20260226, "15:00"), EXHAUSTED,
                   "APPOINTMENTS_TOO_MANY")
        # the refused booking gave its place back
        s = self.slot("XX-SD-0004", 20260226, "15:00")
        self.assertEqual(s.free, GENERAL - 2)  # SD-0001 and SD-0003 share xx-urban
        self.cancel(who, made[0].appointment_id)
        self.book(who, "XX-SD-0004", 20260226, "15:00")
        s = self.slot("XX-SD-0004", 20260226, "15:00")
        self.assertEqual(s.free, GENERAL - 2)

    def test_one_appointment_per_item_per_day(self):
        who = self.l2()
        self.at(FRIDAY, "08:00")
        self.book(who, "XX-BDC-0002", 20260227, "09:00")
        self.fails(lambda: self.book(who, "XX-BDC-0002", 20260227, "15:00"), EXISTS,
                   "APPOINTMENT_DUPLICATE")
        s = self.slot("XX-BDC-0002", 20260227, "15:00")
        self.assertEqual(s.free, GENERAL)
        # another item the same day, the same item another day
        self.book(who, "XX-BDC-0003", 20260227, "15:00")
        self.book(who, "XX-BDC-0002", 20260302, "09:00")

    def test_a_past_appointment_no_longer_counts_and_cannot_be_cancelled(self):
        who = self.l2()
        self.at(FRIDAY, "08:00")
        a = self.book(who, "XX-MZ-0006", FRIDAY, "09:00")
        self.book(who, "XX-MZ-0006", 20260224, "09:00")
        self.book(who, "XX-GJJ-0002", 20260224, "09:00")
        self.at(FRIDAY, "09:10")
        self.fails(lambda: self.cancel(who, a.appointment_id), PRECONDITION,
                   "APPOINTMENT_NOT_UPCOMING")
        # the visit under way is not upcoming: a third upcoming one fits
        self.book(who, "XX-GJJ-0001", 20260225, "09:00")
        # and the same item the same day stays refused
        self.fails(lambda: self.book(who, "XX-MZ-0006", FRIDAY, "15:00"), EXISTS,
                   "APPOINTMENT_DUPLICATE")

    # --- cancelling ------------------------------------------------------------------
    def test_cancel_frees_the_slot(self):
        who, other = self.l2(), self.l2()
        self.at(FRIDAY, "08:00")
        a = self.book(who, "XX-GJJ-0001", 20260226, "14:00")
        self.assertEqual(self.slot("XX-GJJ-0001", 20260226, "14:00").free, GENERAL - 1)
        self.fails(lambda: self.cancel(other, a.appointment_id), NOT_FOUND,
                   "APPOINTMENT_NOT_FOUND")
        c = self.cancel(who, a.appointment_id)
        self.assertEqual((c.appointment_id, c.state),
                         (a.appointment_id, appt_pb().APPOINTMENT_STATE_CANCELLED))
        self.assertEqual(self.slot("XX-GJJ-0001", 20260226, "14:00").free, GENERAL)
        self.assertEqual([(x.appointment_id, x.state) for x in self.mine(who)],
                         [(a.appointment_id, appt_pb().APPOINTMENT_STATE_CANCELLED)])
        self.fails(lambda: self.cancel(who, a.appointment_id), PRECONDITION,
                   "APPOINTMENT_NOT_UPCOMING")
        self.assertEqual(self.slot("XX-GJJ-0001", 20260226, "14:00").free, GENERAL)
        kinds = [m.kind for m in self.inbox(self.md(who)) if m.ref == a.appointment_id]
        self.assertEqual(sorted(kinds), ["appointment.booked", "appointment.cancelled"])
        # the day is free again for that item
        b = self.book(who, "XX-GJJ-0001", 20260226, "14:30")
        self.assertEqual([x.appointment_id for x in self.mine(who)],
                         [b.appointment_id, a.appointment_id])

    def test_cancelling_a_green_place_gives_back_a_green_place(self):
        who = self.l3(birth=born_1950())
        self.at(FRIDAY, "08:00")
        a = self.book(who, "XX-GJJ-0002", 20260227, "16:00", green=True)
        self.assertEqual(self.slot("XX-GJJ-0002", 20260227, "16:00").green_free, GREEN - 1)
        self.cancel(who, a.appointment_id)
        s = self.slot("XX-GJJ-0002", 20260227, "16:00")
        self.assertEqual((s.free, s.green_free), (GENERAL, GREEN))

    def test_when_the_green_places_are_gone_the_green_channel_takes_a_general_place(self):
        elderly = [self.l2(birth=born_1950()) for _ in range(GREEN + 1)]
        self.at(FRIDAY, "08:00")
        made = [self.book(who, "XX-GJJ-0002", 20260227, "14:30", green=True) for who in elderly]
        self.assertTrue(all(a.green_channel and a.green_reason == "elderly" for a in made))
        s = self.slot("XX-GJJ-0002", 20260227, "14:30")
        self.assertEqual((s.free, s.green_free), (GENERAL - 1, 0))
        # each cancellation gives back the place it held
        self.cancel(elderly[GREEN], made[GREEN].appointment_id)
        s = self.slot("XX-GJJ-0002", 20260227, "14:30")
        self.assertEqual((s.free, s.green_free), (GENERAL, 0))
        self.cancel(elderly[0], made[0].appointment_id)
        s = self.slot("XX-GJJ-0002", 20260227, "14:30")
        self.assertEqual((s.free, s.green_free), (GENERAL, 1))

    # --- proxies ----------------------------------------------------------------------
    def test_proxy_books_for_the_principal_whose_eligibility_counts(self):
        principal = self.l3(birth=born_1950())
        agent = self.l2()
        self.at(FRIDAY, "08:00")
        md = self.delegated(agent, principal.account_id,
                            ["filing.read", "filing.submit", "item:XX-RS-0003"])
        a = self.book(None, "XX-RS-0003", 20260227, "10:00", green=True, md=md)
        self.assertEqual((a.green_channel, a.green_reason), (True, "elderly"))
        # the principal's appointment, not the agent's
        self.assertEqual([x.appointment_id for x in self.mine(principal)], [a.appointment_id])
        self.assertEqual(list(self.mine(agent)), [])
        self.assertEqual([x.appointment_id for x in self.mine(None, md=md)], [a.appointment_id])
        notes = [m for m in self.inbox(self.md(principal)) if m.kind == "appointment.booked"]
        self.assertEqual([m.ref for m in notes], [a.appointment_id])
        self.assertEqual([m for m in self.inbox(self.md(agent))
                          if m.kind == "appointment.booked"], [])
        # out of the grant's items: refused by the runtime
        self.fails(lambda: self.book(None, "XX-RS-0004", 20260227, "10:00", md=md), DENIED,
                   "OUT_OF_SCOPE")
        # the agent cancels for the principal
        self.assertEqual(self.cancel(None, a.appointment_id, md=md).state,
                         appt_pb().APPOINTMENT_STATE_CANCELLED)

    def test_an_elderly_agent_does_not_make_a_young_principal_eligible(self):
        principal = self.l3()
        agent = self.l2(birth=born_1950())
        self.at(FRIDAY, "08:00")
        md = self.delegated(agent, principal.account_id, ["filing.submit", "item:XX-RS-0003"])
        self.fails(lambda: self.book(None, "XX-RS-0003", 20260227, "11:00", green=True, md=md),
                   PRECONDITION, "GREEN_CHANNEL_NOT_ELIGIBLE")
        a = self.book(None, "XX-RS-0003", 20260227, "11:00", md=md)
        self.assertEqual(a.green_channel, False)
        # and the principal's limit is the one that counts
        self.assertEqual([x.appointment_id for x in self.mine(principal)], [a.appointment_id])

    # --- bad input ---------------------------------------------------------------------
    def test_list_slots_bad_input_exact_status_and_reason(self):
        self.at(FRIDAY, "08:00")
        self.fails(lambda: self.slots(""), INVALID, "ITEM_CODE_INVALID")
        self.fails(lambda: self.slots("bad code!"), INVALID, "ITEM_CODE_INVALID")
        self.fails(lambda: self.slots("XX-NO-9999"), NOT_FOUND, "ITEM_NOT_FOUND")
        self.fails(lambda: self.slots("XX-GA-0005"), PRECONDITION, "APPOINTMENT_NOT_AVAILABLE")
        self.fails(lambda: self.slots("XX-JT-0001", days=11), INVALID, "DAYS_INVALID")
        self.fails(lambda: self.slots("XX-JT-0001", from_date=20260230), INVALID,
                   "FROM_DATE_INVALID")
        self.fails(lambda: self.slots("XX-JT-0001", from_date=2026), INVALID, "FROM_DATE_INVALID")
        # a date past the horizon lists nothing; one in the past lists from today
        self.assertEqual(list(self.slots("XX-JT-0001", from_date=20260401).slots), [])
        first = self.slots("XX-JT-0001", from_date=20260101, days=1).slots[0]
        self.assertEqual(first.start_ms, ms(FRIDAY, "09:00"))

    def test_book_bad_input_exact_status_and_reason(self):
        who = self.l2()
        l1 = self.people.person(level=1)[0]
        self.at(FRIDAY, "08:00")
        cases = [
            (dict(item="", date=20260224, hhmm="09:00"), INVALID, "ITEM_CODE_INVALID"),
            (dict(item="XX-NO-9999", date=20260224, hhmm="09:00"), NOT_FOUND, "ITEM_NOT_FOUND"),
            (dict(item="XX-RS-0006", date=20260224, hhmm="09:00"), PRECONDITION,
             "APPOINTMENT_NOT_AVAILABLE"),
            (dict(item="XX-JT-0001", date=20260224, hhmm="09:10"), INVALID, "SLOT_INVALID"),
            (dict(item="XX-JT-0001", date=20260224, hhmm="12:00"), INVALID, "SLOT_INVALID"),
            (dict(item="XX-JT-0001", date=20260224, hhmm="17:00"), INVALID, "SLOT_INVALID"),
            (dict(item="XX-JT-0001", date=20260212, hhmm="09:00"), INVALID, "SLOT_INVALID"),
            (dict(item="XX-JT-0001", date=20260216, hhmm="09:00"), INVALID, "SLOT_INVALID"),
            (dict(item="XX-JT-0001", date=20260301, hhmm="09:00"), INVALID, "SLOT_INVALID"),
            (dict(item="XX-JT-0001", date=20260401, hhmm="09:00"), INVALID, "SLOT_TOO_FAR"),
            (dict(item="XX-JT-0001", date=20260224, hhmm="09:00", application_id="a/b"),
             INVALID, "APPLICATION_ID_INVALID"),
        ]
        for kw, code, reason in cases:
            with self.subTest(**kw):
                item, date, hhmm = kw.pop("item"), kw.pop("date"), kw.pop("hhmm")
                self.fails(lambda: self.book(who, item, date, hhmm, **kw), code, reason)
        # slot_start_ms 0 and a slot of today already begun
        self.at(FRIDAY, "09:05")
        self.fails(lambda: self.book(who, "XX-JT-0001", FRIDAY, "09:00"), INVALID,
                   "SLOT_INVALID")
        for start in (0, -1, 2 ** 63 - 1, ms(20260224, "09:00") + 1):
            self.fails(lambda: self.call("BookAppointment", appt_pb().BookAppointmentRequest(
                item_code="XX-JT-0001", slot_start_ms=start), self.md(who)), INVALID,
                "SLOT_INVALID")
        # who may book: signed in, real name (L2)
        self.fails(lambda: self.book(l1, "XX-JT-0001", 20260224, "09:00"), DENIED,
                   "LEVEL_TOO_LOW")
        self.fails(lambda: self.book(None, "XX-JT-0001", 20260224, "09:00", md=[("x", "y")]),
                   UNAUTHENTICATED, None)
        # nothing of these was taken
        s = self.slot("XX-JT-0001", 20260224, "09:00")
        self.assertEqual((s.free, s.green_free), (GENERAL, GREEN))

    def test_cancel_bad_input_exact_status_and_reason(self):
        who = self.l2()
        self.at(FRIDAY, "08:00")
        self.fails(lambda: self.cancel(who, ""), INVALID, "APPOINTMENT_ID_INVALID")
        self.fails(lambda: self.cancel(who, "a:b"), INVALID, "APPOINTMENT_ID_INVALID")
        self.fails(lambda: self.cancel(who, "x" * 65), INVALID, "APPOINTMENT_ID_INVALID")
        self.fails(lambda: self.cancel(who, "NoSuchAppointment00000"), NOT_FOUND,
                   "APPOINTMENT_NOT_FOUND")
        self.assertEqual(list(self.mine(who)), [])


if __name__ == "__main__":
    t.main()
