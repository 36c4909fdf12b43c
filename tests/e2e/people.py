"""Person and enterprise factories shared by the e2e tests: valid random ID
numbers (GB 11643), names and unified social credit codes (GB 32100), the
development registries (`fxb-admin registry import`, `fxb-admin
enterprise-registry import`) and verification through fxb-ekyc-sim and
IdentityService, so that a test gets an L2 / L3 person, a minor, or an
enterprise with a given legal representative in a few calls.

    people = People(srv)              # srv: a running fxbtest.Server
    who, idn = people.l3_person()     # SignedIn with an acr 3 token
    who, idn = people.l2_person()     # real name only (acr 2)
    who, idn = people.minor()         # L2, born less than 18 years ago
    code, name = people.enterprise(idn)
    ent = people.bind(who, code)      # EnterpriseService.BindEnterprise

Everything is random and fresh: the shared Redis keeps identities and
bindings between tests and runs. Failures raise AssertionError."""
import datetime
import os
import random
import subprocess
import tempfile

import fxbtest as t

EKYC_BIN = os.path.join(t.BUILD_DIR, "fxb-ekyc-sim")

_rng = random.SystemRandom()
NAME_CHARS = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾萧田董潘袁蔡蒋"

USCC_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
USCC_WEIGHTS = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)
ORG_WEIGHTS = (3, 7, 9, 10, 5, 8, 4, 2)


def ent_pb():
    return t.pb("fxb/v1/enterprise")


def id_pb():
    return t.pb("fxb/v1/identity")


# --- ID numbers, names ------------------------------------------------------------

def id_check_char(d17):
    w = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
    return "10X98765432"[sum(int(c) * k for c, k in zip(d17, w)) % 11]


def make_id(region="410702", birth=None):
    """A valid 18-character ID number; birth (yyyymmdd text or a date) or a
    random adult birth date between 1950 and 1999."""
    if isinstance(birth, (datetime.date, datetime.datetime)):
        birth = birth.strftime("%Y%m%d")
    birth = birth or "%04d%02d%02d" % (_rng.randrange(1950, 2000), _rng.randrange(1, 13),
                                       _rng.randrange(1, 29))
    d17 = region + birth + "%03d" % _rng.randrange(1000)
    return d17 + id_check_char(d17)


def cst_today():
    """Today in China Standard Time (the server's calendar for ages)."""
    return datetime.datetime.now(datetime.timezone(datetime.timedelta(hours=8))).date()


def years_ago(years, days=0):
    """The date `years` years (and `days` more days) before today (CST);
    29 February moves to 28 February."""
    today = cst_today()
    try:
        d = today.replace(year=today.year - years)
    except ValueError:  # 29 February
        d = today.replace(year=today.year - years, day=28)
    return d - datetime.timedelta(days=days)


def minor_birth(years=12):
    """A birth date `years` years ago (well under 18 by default)."""
    today = cst_today()
    try:
        return today.replace(year=today.year - years)
    except ValueError:  # 29 February
        return today.replace(year=today.year - years, day=28)


def make_name():
    return "".join(_rng.choice(NAME_CHARS) for _ in range(3))


def masked_id(idn):
    return idn[:6] + "*" * 8 + idn[-4:]


# --- credit codes --------------------------------------------------------------

def org_check_char(body8):
    s = sum((int(c) if c.isdigit() else ord(c) - ord("A") + 10) * w
            for c, w in zip(body8, ORG_WEIGHTS))
    c = 11 - s % 11
    return "X" if c == 10 else "0" if c == 11 else str(c)


def uscc_check_char(code17):
    s = sum(USCC_ALPHABET.index(c) * w for c, w in zip(code17, USCC_WEIGHTS))
    return USCC_ALPHABET[(31 - s % 31) % 31]


def make_uscc(region="410700"):
    """A valid credit code (工商, enterprise) with a random organisation code."""
    body = "".join(_rng.choice("0123456789ABCDEFGHJKLMNPQRTUWXY") for _ in range(8))
    code17 = "91" + region + body + org_check_char(body)
    return code17 + uscc_check_char(code17)


def bad_check(code):
    """code with a wrong GB 32100 check character."""
    return code[:17] + next(c for c in "0123456789" if c != code[17])


def make_company():
    return "新乡市%s科技有限公司" % "".join(_rng.choice(NAME_CHARS) for _ in range(4))


# Characters in no test's person-name alphabet: enterprise names made of them
# can never contain a random person name, so no-plaintext checks that scan
# every key (grant labels, inbox texts) cannot trip on a business name.
_PLAIN_CHARS = "甲乙丙戊己庚辛壬癸子丑寅卯辰巳午未申酉戌亥"


def make_plain_company():
    return "新乡市%s科技有限公司" % "".join(_rng.choice(_PLAIN_CHARS) for _ in range(4))


# --- the registries and verification against a server ----------------------------

class People:
    """Factories bound to a running server (its store and data directory)."""

    def __init__(self, srv, tmp=None):
        self.srv = srv
        self.data = srv.env["FXB_DATA_DIR"]
        self.key = os.path.join(self.data, "keys", "ekyc", "ekyc-dev.pem")
        self.tmp = tmp or tempfile.mkdtemp(prefix="fxb-e2e-people.")
        # every ID number, name and phone handed out, for no-plaintext checks
        self.ids, self.names, self.phones = set(), set(), set()

    def admin_import(self, command, lines, expect_ok=True):
        """`fxb-admin <command> import FILE` with lines; the CompletedProcess."""
        path = os.path.join(self.tmp, "import-%d.txt" % _rng.randrange(10 ** 9))
        with open(path, "w", encoding="utf-8") as f:
            f.write("".join(line + "\n" for line in lines))
        try:
            return t.run_admin([command, "import", path], redis_url=self.srv.redis_url,
                               env={"FXB_DATA_DIR": self.data}, check=expect_ok)
        finally:
            os.unlink(path)

    def register(self, name=None, idn=None, district="410702"):
        """One person in the population registry: (name, id)."""
        name, idn = name or make_name(), idn or make_id(district)
        r = self.admin_import("registry", ["%s,%s,%s" % (name, idn, district)])
        if "imported 1 registry records, 0 bad lines" not in r.stdout:
            raise AssertionError("registry import: %s %s" % (r.stdout, r.stderr))
        self.ids.add(idn)
        self.names.add(name)
        return name, idn

    def sign_in(self, phone=None):
        who = t.sign_in(self.srv, phone)
        self.phones.add(who.phone)
        return who

    def _call(self, method, req, who, resp_cls):
        fn = self.srv.unary("/fxb.v1.IdentityService/" + method, type(req), resp_cls)
        return fn(req, metadata=who.md(), timeout=20)

    def attest(self, ch, idn):
        att = subprocess.run([EKYC_BIN, "attest", "--key", self.key, "--nonce", ch.nonce, "--id",
                              idn, "--actions", ",".join(ch.liveness_actions)],
                             capture_output=True, text=True, timeout=30)
        if att.returncode != 0:
            raise AssertionError("fxb-ekyc-sim attest: %s" % att.stderr)
        return att.stdout.strip()

    def verify(self, who, name, idn, level=3):
        """Verifies who as (name, idn) to level 2 or 3 and refreshes who's
        tokens so the access token carries the new acr."""
        p = id_pb()
        ch = self._call("StartVerification", p.StartVerificationRequest(), who,
                        p.StartVerificationResponse)
        att = self.attest(ch, idn) if level == 3 else ""
        got = self._call("CompleteVerification", p.CompleteVerificationRequest(
            challenge_id=ch.challenge_id, name=name, id_number=idn, attestation=att,
            requested_level=level), who, p.Identity)
        if got.assurance_level != level:
            raise AssertionError("verified to level %d, expected %d" % (got.assurance_level,
                                                                       level))
        who.resp = t.auth_call(self.srv, "Refresh",
                               t.auth_pb().RefreshRequest(refresh_token=who.refresh))
        acr = t.jwt_decode(who.access)[1]["acr"]
        if acr != level:
            raise AssertionError("token acr %s after verification to %d" % (acr, level))
        return who

    def person(self, level=3, birth=None, phone=None):
        """A fresh person signed in and verified to level (1: just signed
        in): (SignedIn, id number or None)."""
        who = self.sign_in(phone)
        if level <= 1:
            return who, None
        name, idn = self.register(idn=make_id(birth=birth))
        self.verify(who, name, idn, level)
        return who, idn

    def l3_person(self, **kw):
        """A fresh person verified to L3 (real person): (SignedIn, id)."""
        return self.person(3, **kw)

    def l2_person(self, **kw):
        """A fresh person verified to L2 only (real name, no face): (SignedIn, id)."""
        return self.person(2, **kw)

    def minor(self, level=2, years=12, birth=None):
        """A fresh person verified to level (2 or 3) whose ID number says
        they are `years` old (or born on birth): (SignedIn, id)."""
        return self.person(level, birth=birth or minor_birth(years))

    def enterprise(self, rep_id, name=None):
        """A fresh enterprise in the registry with rep_id as legal
        representative: (code, name)."""
        code, name = make_uscc(), name or make_company()
        r = self.admin_import("enterprise-registry", ["%s,%s,%s" % (code, name, rep_id)])
        if "imported 1 enterprise registry records, 0 bad lines" not in r.stdout:
            raise AssertionError("enterprise registry import: %s %s" % (r.stdout, r.stderr))
        return code, name

    def bind(self, who, code):
        """EnterpriseService.BindEnterprise: the Enterprise."""
        fn = self.srv.unary("/fxb.v1.EnterpriseService/BindEnterprise",
                            ent_pb().BindEnterpriseRequest, ent_pb().Enterprise)
        return fn(ent_pb().BindEnterpriseRequest(credit_code=code), metadata=who.md(),
                  timeout=20)

    def enterprise_with_rep(self):
        """A fresh L3 legal representative with a fresh bound enterprise
        (named with make_plain_company): (rep SignedIn, rep id, Enterprise)."""
        rep, idn = self.l3_person()
        code, _ = self.enterprise(idn, make_plain_company())
        return rep, idn, self.bind(rep, code)
