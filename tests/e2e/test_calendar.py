"""fxb.v1.CalendarService end to end, with the calendar loaded the way an
operator loads it: `fxb-admin calendar import` (the embedded seed
data/calendar/cn.json, 2024-2026, from the State Council notices).

The shared Redis holds one calendar for every test and run, so the seed is
imported (idempotently) before the tests, and a test that changes a day with
`fxb-admin calendar set` puts it back afterwards. Expected dates were worked
out by hand from the notices (weekdays checked with Python's datetime) and
are explained next to each test."""
import datetime
import os
import tempfile

import grpc

import fxbtest as t

SVC = "/fxb.v1.CalendarService/"
INVALID = grpc.StatusCode.INVALID_ARGUMENT
NOT_FOUND = grpc.StatusCode.NOT_FOUND
PRECONDITION = grpc.StatusCode.FAILED_PRECONDITION

CHINA = datetime.timezone(datetime.timedelta(hours=8))
SEED_SUMMARY = "calendar: 3 years (2024, 2025, 2026), 91 holidays, 19 make-up working days\n"


def cal_pb():
    return t.pb("fxb/v1/calendar")


def end_of_china_day_ms(yyyymmdd):
    y, m, d = yyyymmdd // 10000, yyyymmdd // 100 % 100, yyyymmdd % 100
    end = datetime.datetime(y, m, d, 23, 59, 59, 999000, tzinfo=CHINA)
    return int(end.timestamp() * 1000)


def days_between(a, b):
    def date(x):
        return datetime.date(x // 10000, x // 100 % 100, x % 100)
    return (date(b) - date(a)).days


class CalendarTest(t.TestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.srv = t.Server().__enter__()
        r = cls.admin(["calendar", "import"], check=True)
        assert r.stdout == SEED_SUMMARY, r.stdout

    @classmethod
    def tearDownClass(cls):
        cls.srv.__exit__(None, None, None)

    # --- helpers ---------------------------------------------------------------------
    @classmethod
    def admin(cls, args, check=False):
        return t.run_admin(args, redis_url=cls.srv.redis_url, check=check)

    def get(self, year, md=None):
        pb = cal_pb()
        return self.srv.unary(SVC + "GetCalendar", pb.GetCalendarRequest, pb.Calendar)(
            pb.GetCalendarRequest(year=year), metadata=md, timeout=20)

    def add(self, from_date, n, md=None):
        pb = cal_pb()
        return self.srv.unary(SVC + "AddWorkingDays", pb.AddWorkingDaysRequest,
                              pb.AddWorkingDaysResponse)(
            pb.AddWorkingDaysRequest(from_date=from_date, working_days=n), metadata=md,
            timeout=20)

    def assertAdds(self, from_date, n, want):
        resp = self.add(from_date, n)
        self.assertEqual(resp.date, want, "%d + %d working days" % (from_date, n))
        self.assertEqual(resp.deadline_ms, end_of_china_day_ms(want))
        self.assertEqual(resp.calendar_days, days_between(from_date, want))

    def set_day(self, date, kind, name=None):
        args = ["calendar", "set", str(date), kind] + ([name] if name else [])
        return self.admin(args)

    # --- the import --------------------------------------------------------------------
    def test_import_is_idempotent_and_prints_the_summary(self):
        r = self.admin(["calendar", "import"])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout, SEED_SUMMARY)

    def test_import_of_a_bad_file_lists_every_error_and_imports_nothing(self):
        doc = ('{"years": [{"year": 2099, "holidays": ['
               '{"date": 20990230, "name": "元旦"}, {"date": 20990101, "name": ""}],'
               ' "makeup_workdays": [{"date": 20990105, "name": "调休"}]},'
               ' {"year": 2098, "holidays": [{"date": 20980101, "name": "元旦"}],'
               ' "makeup_workdays": []}]}')
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False,
                                         encoding="utf-8") as f:
            f.write(doc)
        try:
            r = self.admin(["calendar", "import", f.name])
        finally:
            os.unlink(f.name)
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertEqual(r.stdout, "")
        for want in ("years[0].holidays[0]: 20990230 is not a real date",
                     "years[0].holidays[1]: name \"\"",
                     "years[0].makeup_workdays[0]: 20990105 is a weekday",
                     "3 errors, nothing imported"):
            self.assertIn(want, r.stderr)
        # 2098 was valid, but nothing of a bad file is written
        self.assertEqual(t.redis_cmd(self.srv.redis_url, "EXISTS", "fxb:calendar:2098"), 0)
        self.assertEqual(t.redis_cmd(self.srv.redis_url, "EXISTS", "fxb:calendar:2099"), 0)
        self.assertCallFails(lambda: self.get(2098), NOT_FOUND, "CALENDAR_YEAR_MISSING")

    def test_show_prints_the_year_in_date_order(self):
        r = self.admin(["calendar", "show", "2024"], check=True)
        lines = r.stdout.splitlines()
        self.assertTrue(lines[0].startswith("calendar 2024: 30 holidays, 8 make-up working days"),
                        lines[0])
        days = [line.split() for line in lines[1:]]
        self.assertEqual(len(days), 38)
        self.assertEqual(days[0], ["20240101", "Mon", "holiday", "元旦"])
        self.assertEqual(days[1], ["20240204", "Sun", "workday", "春节调休上班"])
        self.assertEqual([d[0] for d in days], sorted(d[0] for d in days))
        r = self.admin(["calendar", "show", "2099"])
        self.assertEqual(r.returncode, 1)
        self.assertIn("2099", r.stderr)

    # --- GetCalendar -------------------------------------------------------------------
    def test_get_calendar_lists_every_rest_day_and_make_up_day(self):
        c = self.get(2024)
        self.assertEqual(c.year, 2024)
        self.assertGreater(c.updated_at_ms, 0)
        self.assertEqual(len(c.holidays), 30)
        self.assertEqual((c.holidays[0].date, c.holidays[0].name), (20240101, "元旦"))
        spring = [d.date for d in c.holidays if d.name == "春节"]
        self.assertEqual(spring, list(range(20240210, 20240218)))  # Feb 10..17, weekends too
        self.assertNotIn(20240209, [d.date for d in c.holidays])  # 除夕 2024 was worked
        self.assertEqual([d.date for d in c.makeup_workdays],
                         [20240204, 20240218, 20240407, 20240428, 20240511, 20240914, 20240929,
                          20241012])
        self.assertEqual(c.makeup_workdays[0].name, "春节调休上班")
        c = self.get(2025)
        self.assertEqual((len(c.holidays), len(c.makeup_workdays)), (28, 5))
        c = self.get(2026)
        self.assertEqual((len(c.holidays), len(c.makeup_workdays)), (33, 6))
        self.assertEqual([d.date for d in c.holidays[:3]], [20260101, 20260102, 20260103])
        self.assertEqual(c.makeup_workdays[0].date, 20260104)

    def test_get_calendar_of_a_year_without_data_is_not_found(self):
        self.assertCallFails(lambda: self.get(2099), NOT_FOUND, "CALENDAR_YEAR_MISSING")
        self.assertCallFails(lambda: self.get(2000), NOT_FOUND, "CALENDAR_YEAR_MISSING")

    def test_get_calendar_refuses_years_outside_2000_to_2100(self):
        for year in (0, 1999, 2101, 20240101):
            with self.subTest(year=year):
                self.assertCallFails(lambda: self.get(year), INVALID, "YEAR_INVALID")

    # --- AddWorkingDays ----------------------------------------------------------------
    def test_five_working_days_cross_the_2024_spring_festival(self):
        # Wed Feb 7: Thu 8 (1), Fri 9 (2, 除夕 worked in 2024), Feb 10..17 rest,
        # Sun 18 (3, make-up), Mon 19 (4), Tue 20 (5)
        self.assertAdds(20240207, 2, 20240209)
        self.assertAdds(20240207, 3, 20240218)
        self.assertAdds(20240207, 5, 20240220)
        self.assertEqual(self.add(20240207, 5).calendar_days, 13)

    def test_three_working_days_cross_the_2025_spring_festival(self):
        # Fri Jan 24: Sun 26 (1, make-up), Mon 27 (2), Jan 28..Feb 4 rest, Wed Feb 5 (3)
        self.assertAdds(20250124, 1, 20250126)
        self.assertAdds(20250124, 3, 20250205)

    def test_the_2026_new_year_make_up_sunday_counts(self):
        # Wed 2025-12-31: Jan 1..3 rest, Sun Jan 4 is a make-up working day
        self.assertAdds(20251231, 1, 20260104)
        # Thu 2026-02-12: Fri 13 (1), Sat 14 (2, make-up)
        self.assertAdds(20260212, 2, 20260214)

    def test_zero_working_days_is_the_start_date(self):
        self.assertAdds(20240210, 0, 20240210)

    def test_a_deadline_is_the_end_of_the_china_day(self):
        resp = self.add(20240207, 5)
        end = datetime.datetime.fromtimestamp(resp.deadline_ms / 1000, CHINA)
        self.assertEqual((end.date(), end.hour, end.minute, end.second),
                         (datetime.date(2024, 2, 20), 23, 59, 59))
        # 2024-02-20T15:59:59.999Z
        self.assertEqual(resp.deadline_ms, 1708444799999)

    def test_bad_inputs_are_refused_with_their_reason(self):
        for from_date in (0, 20240230, 20241301, 19991231, 21010101, 2024020):
            with self.subTest(from_date=from_date):
                self.assertCallFails(lambda: self.add(from_date, 1), INVALID, "DATE_INVALID")
        self.assertCallFails(lambda: self.add(20240207, 1001), INVALID, "WORKING_DAYS_INVALID")
        # 251 working days in 2024 and 248 in 2025: the 600th is the 101st of 2026
        self.assertAdds(20240101, 600, 20260602)

    def test_a_count_running_into_a_year_without_data_fails(self):
        # Fri 2026-12-25: Dec 28..31 are the last four working days with data
        self.assertAdds(20261225, 4, 20261231)
        self.assertCallFails(lambda: self.add(20261225, 5), PRECONDITION,
                             "CALENDAR_YEAR_MISSING")
        self.assertCallFails(lambda: self.add(20240101, 1000), PRECONDITION,
                             "CALENDAR_YEAR_MISSING")
        self.assertCallFails(lambda: self.add(20231229, 1), PRECONDITION,
                             "CALENDAR_YEAR_MISSING")

    def test_the_service_is_public_and_ignores_tokens(self):
        for md in (None, [("authorization", "Bearer abc")]):
            self.assertEqual(self.get(2024, md=md).year, 2024)
            self.assertEqual(self.add(20240207, 5, md=md).date, 20240220)

    # --- fxb-admin calendar set -----------------------------------------------------------
    def test_a_day_set_by_the_operator_is_seen_by_the_next_call(self):
        # Fri 2026-11-13 + 1: Mon Nov 16, until Sat Nov 14 becomes a make-up day
        self.assertAdds(20261113, 1, 20261116)
        self.addCleanup(self.set_day, 20261114, "normal")
        r = self.set_day(20261114, "workday", "测试调休")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("20261114 (Sat) is now a make-up working day", r.stdout)
        self.assertAdds(20261113, 1, 20261114)
        self.assertIn((20261114, "测试调休"), [(d.date, d.name) for d in
                                             self.get(2026).makeup_workdays])
        r = self.set_day(20261114, "normal")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertAdds(20261113, 1, 20261116)
        self.assertNotIn(20261114, [d.date for d in self.get(2026).makeup_workdays])

    def test_a_weekday_holiday_moves_the_count(self):
        # Thu 2026-11-12 + 1 is Fri 13; as a holiday, Mon 16
        self.addCleanup(self.set_day, 20261113, "normal")
        r = self.set_day(20261113, "holiday", "测试假日")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertAdds(20261112, 1, 20261116)
        self.set_day(20261113, "normal")
        self.assertAdds(20261112, 1, 20261113)

    def test_set_refuses_what_the_rules_forbid(self):
        cases = (
            (["20261113", "workday"], 2, "Saturday or Sunday"),  # a Friday
            (["20261114", "holiday"], 2, "name"),                # a Saturday without a name
            (["20261131", "holiday", "x"], 2, "not a real date"),
            (["20261113", "someday"], 2, "calendar set"),
            (["20270105", "holiday", "测试"], 1, "2027"),        # no data for 2027
        )
        for args, rc, text in cases:
            with self.subTest(args=args):
                r = self.admin(["calendar", "set"] + args)
                self.assertEqual(r.returncode, rc, r.stdout + r.stderr)
                self.assertIn(text, r.stderr)
        self.assertAdds(20261113, 1, 20261116)  # nothing changed


if __name__ == "__main__":
    t.main()
