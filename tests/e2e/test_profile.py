"""fxb.v1.ProfileService end to end: the shared profile data of the
zero-application benefits (免申即享). Departments feed typed attributes by
the ID number or credit code through UpsertProfiles (a data-feed account
writes only its own department's attributes) or `fxb-admin profile
import`; bad records are reported with their position, field and reason
and never stop the feed nor touch stored data; people read their own
profile (GetMyProfile, from the verified identity) and legal
representatives their enterprise's; the schema is public. No ID number or
credit code is ever kept in Redis or written to the log."""
import hashlib
import hmac
import json
import os
import tempfile

import grpc

import fxbtest as t
import people as pp

SVC = "/fxb.v1.ProfileService/"
INVALID = grpc.StatusCode.INVALID_ARGUMENT
NOT_FOUND = grpc.StatusCode.NOT_FOUND
DENIED = grpc.StatusCode.PERMISSION_DENIED
UNAUTH = grpc.StatusCode.UNAUTHENTICATED

PERSON = 1
ENTERPRISE = 2


def P():
    return t.pb("fxb/v1/profile")


def bad_check(idn):
    """The ID number with a wrong check character."""
    c = "0" if idn[17] != "0" else "1"
    return idn[:17] + c


class ProfileTest(t.TestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.srv = t.Server(extra_env=t.AUTH_ENV).__enter__()
        cls.tmp = tempfile.mkdtemp(prefix="fxb-e2e-profile.")
        cls.people = pp.People(cls.srv, cls.tmp)
        cls.fed = set()  # every ID number and credit code fed
        r = cls.admin(["profile", "schema", "import"])
        assert r.returncode == 0, r.stderr
        feeds = {}
        for dept in ("xx-police", "xx-health"):
            phone = t.random_phone()
            t.make_staff(cls.srv, phone, "data-feed", dept)
            feeds[dept] = t.sign_in(cls.srv, phone)
        cls.police, cls.health = feeds["xx-police"], feeds["xx-health"]
        phone = t.random_phone()
        t.make_staff(cls.srv, phone, "admin")
        cls.root = t.sign_in(cls.srv, phone)

    @classmethod
    def tearDownClass(cls):
        cls.srv.__exit__(None, None, None)

    # --- helpers -------------------------------------------------------------
    @classmethod
    def admin(cls, args, check=False):
        return t.run_admin(args, redis_url=cls.srv.redis_url,
                           env={"FXB_DATA_DIR": cls.srv.env["FXB_DATA_DIR"]}, check=check)

    def upsert(self, who, records):
        fn = self.srv.stream_unary(SVC + "UpsertProfiles", P().ProfileRecord, P().UpsertSummary)
        return fn(iter(records), metadata=who.md() if who else None, timeout=30)

    def my_profile(self, who, enterprise_id=""):
        fn = self.srv.unary(SVC + "GetMyProfile", P().GetMyProfileRequest, P().Profile)
        return fn(P().GetMyProfileRequest(enterprise_id=enterprise_id), metadata=who.md(),
                  timeout=20)

    def person(self, idn, clear=(), **values):
        self.fed.add(idn)
        return P().ProfileRecord(subject_type=PERSON, id_number=idn, clear=list(clear),
                                 values=[self.value(k, v) for k, v in values.items()])

    def company(self, code, clear=(), **values):
        self.fed.add(code)
        return P().ProfileRecord(subject_type=ENTERPRISE, credit_code=code, clear=list(clear),
                                 values=[self.value(k, v) for k, v in values.items()])

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

    def pid(self, idn):
        """The person subject of idn as the server derives it: "p" + 24 hex
        of the blind index (HMAC-SHA256 under index.key, label id_number)."""
        with open(os.path.join(self.srv.env["FXB_DATA_DIR"], "keys", "data", "index.key"),
                  "rb") as f:
            key = f.read()
        return "p" + hmac.new(key, b"id_number\x00" + idn.encode(),
                              hashlib.sha256).hexdigest()[:24]

    def stored(self, idn):
        """The person's profile hash as Redis holds it."""
        h = t.redis_cmd(self.srv.redis_url, "HGETALL", "{p:%s}:profile" % self.pid(idn))
        return dict(zip(h[0::2], h[1::2]))

    @staticmethod
    def entries(profile):
        out = {}
        for e in profile.entries:
            v = e.value
            which = v.WhichOneof("value")
            val = list(v.set_value.members) if which == "set_value" else getattr(v, which)
            out[v.name] = (val, e.source)
        return out

    # --- the schema ----------------------------------------------------------
    def test_schema_is_public_and_has_the_derived_age(self):
        fn = self.srv.unary(SVC + "GetSchema", P().GetSchemaRequest, P().Schema)
        s = fn(P().GetSchemaRequest(), timeout=10)
        self.assertGreater(s.rev, 0)
        by = {(a.subject_type, a.name): a for a in s.attributes}
        self.assertEqual(len(by), 18)
        age = by[(PERSON, "age")]
        self.assertTrue(age.derived)
        self.assertEqual(age.type, "int")
        d = by[(PERSON, "district")]
        self.assertEqual((d.type, d.source, len(d.values), d.values[0]),
                         ("enum", "xx-police", 15, "红旗区"))
        self.assertEqual((by[(PERSON, "children")].min, by[(PERSON, "children")].max), (0, 20))
        self.assertEqual(by[(ENTERPRISE, "certifications")].type, "set")
        self.assertEqual(list(by[(ENTERPRISE, "tax_credit_rating")].values),
                         ["A", "B", "M", "C", "D"])

    # --- UpsertProfiles ------------------------------------------------------
    def test_good_and_bad_records_mixed(self):
        a, b = pp.make_id(birth="19400501"), pp.make_id()
        first = self.upsert(self.police, [self.person(a, district="卫滨区",
                                                      household_type="rural")])
        self.assertEqual((first.received, first.applied, first.unchanged, first.rejected),
                         (1, 1, 0, 0))
        before = self.stored(a)
        feed = t.redis_cmd(self.srv.redis_url, "XLEN", "fxb:profile:changes")
        records = [
            self.person(a, district="红旗区", birth_date="1940-05-01"),     # 1 good
            self.person(bad_check(b), district="红旗区"),                 # 2 bad ID number
            self.person(a, district="牧野区", shoe_size="42"),            # 3 unknown attribute
            self.person(a, household_type="urban", district=3),          # 4 wrong type
            self.person(a, district="郑州市"),                            # 5 not a value
            self.person(a, birth_date="1940-02-30"),                     # 6 no such date
            self.person(a, household_type="urban", children=2),          # 7 other department
            self.person(a, age=86),                                      # 8 derived
            self.person(b, district="凤泉区"),                            # 9 good
            self.person(a, district="红旗区", birth_date="1940-05-01"),     # 10 unchanged
            self.person(a, clear=["veteran"]),                           # 11 other dept's clear
            P().ProfileRecord(subject_type=PERSON, credit_code="91410700123456789X"),  # 12
        ]
        s = self.upsert(self.police, records)
        self.assertEqual((s.received, s.applied, s.unchanged, s.rejected), (12, 3, 1, 9))
        got = [(r.position, r.field, r.reason) for r in s.rejections]
        self.assertEqual(got, [
            (2, "id_number", "ID_NUMBER_CHECK"),
            (3, "values[1].name", "ATTRIBUTE_UNKNOWN"),
            (4, "values[1].int_value", "TYPE_MISMATCH"),
            (5, "values[0].text_value", "ENUM_VALUE_UNKNOWN"),
            (6, "values[0].text_value", "DATE_INVALID"),
            (7, "values[1].name", "SOURCE_MISMATCH"),
            (8, "values[0].name", "ATTRIBUTE_DERIVED"),
            (11, "clear[0]", "SOURCE_MISMATCH"),
            (12, "id_number", "ID_NUMBER_REQUIRED"),
        ])
        for r in s.rejections:
            self.assertTrue(r.message)
            self.assertNotIn(a, r.message)
            self.assertNotIn(b[:17], r.message)
        # only the good records changed a's profile: district and birth_date
        # set, household_type still rural (records 4 and 7 wrote nothing)
        after = self.stored(a)
        self.assertEqual(after[b"district"], "红旗区".encode())
        self.assertEqual(after[b"birth_date"], b"19400501")
        self.assertEqual(after[b"household_type"], b"rural")
        self.assertEqual(after[b"_rev"], b"2")
        self.assertEqual(after[b"@household_type"], before[b"@household_type"])
        self.assertTrue(after[b"@district"].startswith(b"xx-police "))
        self.assertEqual(set(after), set(before) | {b"birth_date", b"@birth_date"})
        self.assertEqual(self.stored(b)[b"district"], "凤泉区".encode())
        self.assertEqual(t.redis_cmd(self.srv.redis_url, "XLEN", "fxb:profile:changes"),
                         feed + 2)

    def test_out_of_bounds_for_the_health_feed(self):
        a = pp.make_id()
        s = self.upsert(self.health, [self.person(a, children=21), self.person(a, children=2),
                                      self.person(a, children=-1), self.person(a, children=2)])
        self.assertEqual((s.received, s.applied, s.unchanged, s.rejected), (4, 2, 1, 2))
        self.assertEqual([(r.position, r.field, r.reason) for r in s.rejections],
                         [(1, "values[0].int_value", "OUT_OF_RANGE"),
                          (3, "values[0].int_value", "OUT_OF_RANGE")])

    def test_upsert_needs_the_data_feed_or_admin_role(self):
        citizen = t.sign_in(self.srv)
        self.assertCallFails(lambda: self.upsert(citizen, [self.person(pp.make_id())]), DENIED,
                             "ROLE_REQUIRED")
        self.assertCallFails(lambda: self.upsert(None, [self.person(pp.make_id())]), UNAUTH)
        # an admin writes any department's attribute
        s = self.upsert(self.root, [self.person(pp.make_id(), district="红旗区", children=1,
                                                veteran=True)])
        self.assertEqual((s.applied, s.rejected), (1, 0))

    # --- GetMyProfile ----------------------------------------------------------
    def test_my_profile_after_verification(self):
        who, idn = self.people.l3_person(birth="19400501")
        self.fed.add(idn)
        self.upsert(self.police, [self.person(idn, district="红旗区", birth_date="1940-05-01")])
        self.upsert(self.health, [self.person(idn, children=3)])
        p = self.my_profile(who)
        self.assertEqual(p.subject_type, PERSON)
        self.assertTrue(p.subject_id.startswith("p") and len(p.subject_id) == 25)
        got = self.entries(p)
        today = pp.cst_today()
        age = today.year - 1940 - ((today.month, today.day) < (5, 1))
        self.assertEqual(got, {"birth_date": ("1940-05-01", "xx-police"),
                               "district": ("红旗区", "xx-police"),
                               "children": (3, "xx-health"),
                               "age": (age, "xx-police")})
        self.assertTrue(all(e.updated_at_ms > 0 for e in p.entries))
        self.assertGreater(p.updated_at_ms, 0)
        # someone without a verified identity has no person profile
        plain = t.sign_in(self.srv)
        self.assertCallFails(lambda: self.my_profile(plain), NOT_FOUND, "IDENTITY_NOT_VERIFIED")
        # a verified person nobody fed has an empty profile
        other, _ = self.people.l2_person()
        self.assertEqual(list(self.my_profile(other).entries), [])

    def test_enterprise_profile_through_its_legal_representative(self):
        rep, idn = self.people.l3_person()
        code, _ = self.people.enterprise(idn)
        ent = self.people.bind(rep, code)
        s = self.upsert(self.root, [self.company(code, size_class="small", employees=12,
                                                 certifications=["专精特新", "ISO9001",
                                                                 "ISO9001"],
                                                 established_date="2015-03-01")])
        self.assertEqual((s.applied, s.rejected), (1, 0))
        p = self.my_profile(rep, ent.enterprise_id)
        self.assertEqual((p.subject_id, p.subject_type), (ent.enterprise_id, ENTERPRISE))
        self.assertEqual(self.entries(p), {
            "size_class": ("small", "xx-market"), "employees": (12, "xx-hrss"),
            "certifications": (["ISO9001", "专精特新"], "xx-market"),
            "established_date": ("2015-03-01", "xx-market")})
        stranger, _ = self.people.l3_person()
        self.assertCallFails(lambda: self.my_profile(stranger, ent.enterprise_id), DENIED,
                             "NOT_LEGAL_REPRESENTATIVE")
        self.assertCallFails(lambda: self.my_profile(rep, "e123"), INVALID,
                             "ENTERPRISE_ID_INVALID")

    # --- fxb-admin profile import ------------------------------------------------
    def write(self, name, lines):
        path = os.path.join(self.tmp, name)
        with open(path, "w", encoding="utf-8") as f:
            f.write("".join(line + "\n" for line in lines))
        return path

    def test_admin_import_ndjson_with_bad_rows(self):
        a, b = pp.make_id(), pp.make_id()
        self.fed.update((a, b))
        rows = [
            {"subject_type": "person", "id_number": a,
             "values": {"district": "红旗区", "birth_date": "1940-05-01", "low_income": True,
                        "children": 2}, "clear": ["veteran"]},
            {"subject_type": "person", "id_number": bad_check(b), "values": {"children": 1}},
            {"subject_type": "person", "id_number": b, "values": {"children": 99}},
            {"subject_type": "person", "id_number": b, "values": {"age": 3}},
            {"subject_type": "person", "id_number": b, "values": {"district": "北京"}},
            {"subject_type": "person", "id_number": b, "values": {"veteran": True}},
        ]
        lines = [json.dumps(r, ensure_ascii=False) for r in rows]
        lines.insert(3, "{not json " + b)
        lines.insert(4, "")
        path = self.write("feed.ndjson", lines)
        r = self.admin(["profile", "import", path])
        self.assertEqual(r.returncode, 1, r.stderr)
        out = r.stdout.splitlines()
        self.assertEqual(out[0], "profile import: 7 rows, 2 applied, 0 unchanged, 5 rejected")
        self.assertEqual([line.split(" (")[0] for line in out[1:]], [
            "  row 2: id_number: ID_NUMBER_CHECK",
            "  row 3: children: OUT_OF_RANGE",
            "  row 4: -: JSON_INVALID",
            "  row 6: age: ATTRIBUTE_DERIVED",
            "  row 7: district: ENUM_VALUE_UNKNOWN",
        ])
        for idn in (a, b):
            self.assertNotIn(idn, r.stdout + r.stderr)
            self.assertNotIn(idn[:17], r.stdout + r.stderr)
        # again: every good row unchanged
        r = self.admin(["profile", "import", path])
        self.assertIn("profile import: 7 rows, 2 applied, 2 unchanged, 5 rejected", r.stdout)
        # the good rows alone: exit 0
        good = self.write("good.ndjson", [lines[0], lines[-1]])
        r = self.admin(["profile", "import", good, "--format", "ndjson"])
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("profile import: 2 rows, 2 applied, 2 unchanged, 0 rejected", r.stdout)

    def test_admin_import_csv_as_a_department(self):
        ids = [pp.make_id() for _ in range(4)]
        self.fed.update(ids)
        lines = ["subject_type,id_number,district,birth_date,household_type,children",
                 "person,%s,红旗区,1950-01-02,urban," % ids[0],
                 "person,%s,\"卫滨区\",,rural," % ids[1],
                 "person,%s,红旗区,,,3" % ids[2],           # another department's column
                 "person,%s,红旗区,1950-13-01,," % ids[3],
                 "person,%s,红旗区,,urban" % ids[3],        # a cell missing
                 "person,%s,,,," % bad_check(ids[3])]
        path = self.write("feed.csv", lines)
        r = self.admin(["profile", "import", path, "--dept", "xx-police"])
        self.assertEqual(r.returncode, 1, r.stderr)
        out = r.stdout.splitlines()
        self.assertEqual(out[0], "profile import: 6 rows, 2 applied, 0 unchanged, 4 rejected")
        self.assertEqual([line.split(" (")[0] for line in out[1:]], [
            "  row 4: children: SOURCE_MISMATCH",
            "  row 5: birth_date: DATE_INVALID",
            "  row 6: -: CSV_COLUMNS",
            "  row 7: id_number: ID_NUMBER_CHECK",
        ])
        for idn in ids:
            self.assertNotIn(idn[:17], r.stdout + r.stderr)
        # sets in CSV are separated by '|'; an admin import takes any column
        rep, idn = self.people.l3_person()
        code, _ = self.people.enterprise(idn)
        self.fed.add(code)
        ent = self.people.bind(rep, code)
        path = self.write("ent.csv", ["subject_type,credit_code,certifications,high_tech,employees",
                                      "enterprise,%s,B|A|B,true,30" % code])
        r = self.admin(["profile", "import", path, "--progress"])
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("profile import: 1 rows, 1 applied, 0 unchanged, 0 rejected", r.stdout)
        self.assertIn("rows/s", r.stderr)
        got = self.entries(self.my_profile(rep, ent.enterprise_id))
        self.assertEqual(got["certifications"], (["A", "B"], "xx-market"))
        self.assertEqual(got["high_tech"], (True, "xx-science"))
        self.assertEqual(got["employees"], (30, "xx-hrss"))
        # a header naming no attribute stops before any row
        bad = self.write("bad.csv", ["subject_type,id_number,shoe_size",
                                     "person,%s,42" % ids[0]])
        r = self.admin(["profile", "import", bad])
        self.assertEqual(r.returncode, 1)
        self.assertIn("shoe_size", r.stderr)

    def test_admin_import_usage(self):
        r = self.admin(["profile", "import"])
        self.assertEqual(r.returncode, 2)
        r = self.admin(["profile", "import", "x.ndjson", "--dept", "XX"])
        self.assertEqual(r.returncode, 2)
        bad = self.write("schema.json", ['{"attributes": [{"name": "X"}]}'])
        r = self.admin(["profile", "schema", "import", bad])
        self.assertEqual(r.returncode, 1)
        self.assertIn("attributes[0].name", r.stderr)
        self.assertIn("nothing was imported", r.stderr)

    # --- last: nothing in clear ---------------------------------------------------
    def test_zz_no_id_number_or_credit_code_in_redis_or_the_log(self):
        ids = {x for x in self.fed if len(x) == 18 and x[:17].isdigit()}
        codes = self.fed - ids
        self.assertTrue(ids and codes)
        for key, values in t.redis_dump(self.srv.redis_url):
            blob = key + b"\x00" + b"\x00".join(values)
            for idn in ids:
                self.assertNotIn(idn.encode(), blob, "found in %r" % key)
                self.assertNotIn(idn[:17].encode(), blob, "found in %r" % key)
            # the enterprise service keeps the bound enterprise's code (its
            # own business); profiles and their change feed never do
            if key.endswith(b":profile") or key.startswith(b"fxb:profile:"):
                for code in codes:
                    self.assertNotIn(code.encode(), blob, "found in %r" % key)
        log = self.srv.log()
        for secret in self.fed:
            self.assertNotIn(secret, log)
            self.assertNotIn(secret[:17], log)

if __name__ == "__main__":
    t.main()
