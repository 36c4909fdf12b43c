"""The method access matrix: every method the server offers (found by
reflection, so a new method cannot slip through) has a rule in RULES, and
each rule is checked for every kind of caller:

  none      no authorization header
  bad       "Bearer abc"
  L1/L2/L3  citizens at assurance level 1, 2 (real name), 3 (real person)
  off@own   officer of dept-a, the request names dept-a
  off@other officer of dept-a, the request names dept-b
  admin     admin (level 1), the request names dept-b
  stale     L1 citizen whose token's auth_time is an hour old (forged with
            the server's key for a real session)

A method missing from RULES fails the test: add it to the access matrix.
Unary methods are called with an empty request of their input type (plus the
department field, when the request has one); a handler error such as
INVALID_ARGUMENT on an empty request means the runtime let the call through,
which is what "allowed" means here. Client-streaming methods with a rule
other than PUBLIC are in the matrix too, called with one empty message;
public streaming methods are checked by calling them without and with a bad
token."""
import sys
import time

import grpc
from google.protobuf import message_factory

import fxbtest as t

UNAUTH = grpc.StatusCode.UNAUTHENTICATED
DENIED = grpc.StatusCode.PERMISSION_DENIED

PUBLIC = "public"
SIGNED_IN = "signed_in"
REAL_NAME = "real_name"      # assurance L2+
REAL_PERSON = "real_person"  # assurance L3
STEP_UP = "step_up"          # auth_time at most 10 minutes old
OFFICER = "officer"          # officer of the request's department (admin passes)
STAFF = "staff"              # officer or admin; the handler checks the department
                             # (it is in stored data or a nested field)
ADMIN = "admin"
DATA_FEED = "data_feed"     # a department's data feed (admin passes)
REAL_PERSON_STEP_UP = "l3_step_up"  # assurance L3 and auth_time at most 5 minutes old

RULES = {
    "/grpc.health.v1.Health/Check": PUBLIC,
    "/grpc.health.v1.Health/Watch": PUBLIC,
    "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo": PUBLIC,
    "/fxb.v1.SystemService/GetInfo": PUBLIC,
    "/fxb.v1.AuthService/SendCode": PUBLIC,
    "/fxb.v1.AuthService/SignInWithCode": PUBLIC,
    "/fxb.v1.AuthService/SignInWithPassword": PUBLIC,
    "/fxb.v1.AuthService/Refresh": PUBLIC,
    "/fxb.v1.AuthService/StepUp": SIGNED_IN,
    "/fxb.v1.AuthService/SetPassword": STEP_UP,
    "/fxb.v1.AuthService/GetMe": SIGNED_IN,
    "/fxb.v1.AuthService/ListSessions": SIGNED_IN,
    "/fxb.v1.AuthService/SignOut": SIGNED_IN,
    "/fxb.v1.AuthService/SignOutOthers": SIGNED_IN,
    "/fxb.v1.AccessibilityService/GetSettings": SIGNED_IN,
    "/fxb.v1.AccessibilityService/UpdateSettings": SIGNED_IN,
    "/fxb.v1.AccessibilityService/StartTrustedRelative": STEP_UP,
    "/fxb.v1.AccessibilityService/ConfirmTrustedRelative": SIGNED_IN,
    "/fxb.v1.AccessibilityService/RemoveTrustedRelative": SIGNED_IN,
    "/fxb.v1.IdentityService/StartVerification": SIGNED_IN,
    "/fxb.v1.IdentityService/CompleteVerification": SIGNED_IN,
    "/fxb.v1.IdentityService/GetMyIdentity": SIGNED_IN,
    "/fxb.v1.IdentityService/DeleteMyIdentity": STEP_UP,
    "/fxb.v1.EnterpriseService/BindEnterprise": REAL_PERSON,
    "/fxb.v1.EnterpriseService/ListMyEnterprises": SIGNED_IN,
    "/fxb.v1.EnterpriseService/UnbindEnterprise": SIGNED_IN,
    "/fxb.v1.ProxyService/OfferGrant": REAL_PERSON_STEP_UP,
    "/fxb.v1.ProxyService/RequestGrant": REAL_NAME,
    "/fxb.v1.ProxyService/AcceptGrant": REAL_NAME,
    "/fxb.v1.ProxyService/DeclineGrant": SIGNED_IN,
    "/fxb.v1.ProxyService/ApproveGrant": REAL_PERSON_STEP_UP,
    "/fxb.v1.ProxyService/RejectGrant": SIGNED_IN,
    "/fxb.v1.ProxyService/RevokeGrant": SIGNED_IN,
    "/fxb.v1.ProxyService/ResignGrant": SIGNED_IN,
    "/fxb.v1.ProxyService/GetGrant": SIGNED_IN,
    "/fxb.v1.ProxyService/ListGrants": SIGNED_IN,
    "/fxb.v1.ProxyService/ExchangeToken": REAL_NAME,
    "/fxb.v1.ProxyService/ListGrantActivity": SIGNED_IN,
    "/fxb.v1.ProxyService/SetActivityNotice": SIGNED_IN,
    "/fxb.v1.CatalogService/ListItems": PUBLIC,
    "/fxb.v1.CatalogService/SearchItems": PUBLIC,
    "/fxb.v1.CatalogService/GetItem": PUBLIC,
    "/fxb.v1.CatalogService/ListCategories": PUBLIC,
    "/fxb.v1.CatalogService/ListDepartments": PUBLIC,
    "/fxb.v1.CatalogService/ListBundles": PUBLIC,
    "/fxb.v1.CatalogService/GetBundle": PUBLIC,
    "/fxb.v1.CalendarService/GetCalendar": PUBLIC,
    "/fxb.v1.CalendarService/AddWorkingDays": PUBLIC,
    "/fxb.v1.MaterialService/UploadMaterial": SIGNED_IN,
    "/fxb.v1.MaterialService/ListWallet": SIGNED_IN,
    "/fxb.v1.MaterialService/GetMaterial": SIGNED_IN,
    "/fxb.v1.MaterialService/DeleteMaterial": SIGNED_IN,
    "/fxb.v1.FilingService/CreateApplication": REAL_NAME,
    "/fxb.v1.FilingService/AttachMaterials": SIGNED_IN,
    "/fxb.v1.FilingService/SubmitApplication": SIGNED_IN,
    "/fxb.v1.FilingService/SupplementMaterials": SIGNED_IN,
    "/fxb.v1.FilingService/WithdrawApplication": SIGNED_IN,
    "/fxb.v1.FilingService/GetApplication": SIGNED_IN,
    "/fxb.v1.FilingService/ListApplications": SIGNED_IN,
    "/fxb.v1.OfficerService/ListQueue": OFFICER,
    "/fxb.v1.OfficerService/GetApplication": OFFICER,
    "/fxb.v1.OfficerService/AcceptApplication": OFFICER,
    "/fxb.v1.OfficerService/RequestCorrection": OFFICER,
    "/fxb.v1.OfficerService/StartReview": OFFICER,
    "/fxb.v1.OfficerService/StartSpecialProcedure": OFFICER,
    "/fxb.v1.OfficerService/EndSpecialProcedure": OFFICER,
    "/fxb.v1.OfficerService/ApproveApplication": OFFICER,
    "/fxb.v1.OfficerService/DenyApplication": OFFICER,
    "/fxb.v1.OfficerService/CompleteApplication": OFFICER,
    "/fxb.v1.OfficerService/MarkCommitmentBroken": OFFICER,
    "/fxb.v1.OfficerService/ConfirmRectified": OFFICER,
    "/fxb.v1.OfficerService/OverdueReport": OFFICER,
    "/fxb.v1.RatingService/RateApplication": SIGNED_IN,
    "/fxb.v1.RatingService/GetRating": SIGNED_IN,
    "/fxb.v1.RatingService/RateFollowUp": SIGNED_IN,
    "/fxb.v1.RatingService/ListFollowUps": OFFICER,
    "/fxb.v1.RatingService/RecordCallBack": OFFICER,
    "/fxb.v1.RatingService/RecordRectification": OFFICER,
    "/fxb.v1.RatingService/GetPublicResults": PUBLIC,
    "/fxb.v1.AppointmentService/ListSlots": PUBLIC,
    "/fxb.v1.AppointmentService/BookAppointment": REAL_NAME,
    "/fxb.v1.AppointmentService/ListAppointments": SIGNED_IN,
    "/fxb.v1.AppointmentService/CancelAppointment": SIGNED_IN,
    "/fxb.v1.ProfileService/UpsertProfiles": DATA_FEED,
    "/fxb.v1.ProfileService/GetMyProfile": SIGNED_IN,
    "/fxb.v1.ProfileService/GetSchema": PUBLIC,
    "/fxb.v1.BenefitService/CreatePolicy": STAFF,
    "/fxb.v1.BenefitService/UpdatePolicy": STAFF,
    "/fxb.v1.BenefitService/PublishPolicy": STAFF,
    "/fxb.v1.BenefitService/ClosePolicy": STAFF,
    "/fxb.v1.BenefitService/GetPolicy": STAFF,
    "/fxb.v1.BenefitService/ListPolicies": OFFICER,
    "/fxb.v1.BenefitService/CheckRule": STAFF,
    "/fxb.v1.BenefitService/ListPolicyEntitlements": STAFF,
    "/fxb.v1.BenefitService/ConfirmEntitlement": STAFF,
    "/fxb.v1.BenefitService/RejectEntitlement": STAFF,
    "/fxb.v1.BenefitService/RecordPayment": DATA_FEED,
    "/fxb.v1.BenefitService/ListPublishedPolicies": PUBLIC,
    "/fxb.v1.BenefitService/ListMyEntitlements": REAL_NAME,
    "/fxb.v1.BenefitService/GetMyEntitlement": REAL_NAME,
    "/fxb.v1.BenefitService/DeclineEntitlement": REAL_NAME,
    "/fxb.v1.BenefitService/SetPayoutAccount": REAL_PERSON_STEP_UP,
    "/fxb.v1.BenefitService/GetPayoutAccount": REAL_NAME,
    "/fxb.v1.InboxService/ListMessages": SIGNED_IN,
    "/fxb.v1.InboxService/MarkRead": SIGNED_IN,
    "/fxb.v1.InboxService/Subscribe": SIGNED_IN,
    "/fxb.v1.DiagService/Echo": PUBLIC,
    "/fxb.v1.DiagService/Collect": PUBLIC,
    "/fxb.v1.DiagService/Ticks": PUBLIC,
    "/fxb.v1.DiagService/Chat": PUBLIC,
    "/fxb.v1.DiagService/ProbeSignedIn": SIGNED_IN,
    "/fxb.v1.DiagService/ProbeRealName": REAL_NAME,
    "/fxb.v1.DiagService/ProbeRealPerson": REAL_PERSON,
    "/fxb.v1.DiagService/ProbeStepUp": STEP_UP,
    "/fxb.v1.DiagService/ProbeOfficer": OFFICER,
    "/fxb.v1.DiagService/ProbeAdmin": ADMIN,
    "/fxb.v1.DiagService/ProbeDelegated": SIGNED_IN,
    "/fxb.v1.DiagService/ProbeItem": SIGNED_IN,
    "/fxb.v1.DiagService/SetClockOffset": PUBLIC,
    "/fxb.v1.DiagService/RunSweeper": PUBLIC,
    "/fxb.v1.DiagService/SyncBenefitEngine": PUBLIC,
}

# Methods that end sessions: each call gets a session of its own, made just
# before it, and they run after every other call.
DESTRUCTIVE = ("/fxb.v1.AuthService/SignOutOthers", "/fxb.v1.AuthService/SignOut")

OWN_DEPT = "dept-a"
OTHER_DEPT = "dept-b"


def _message_class(desc):
    get = getattr(message_factory, "GetMessageClass", None)
    if get is not None:
        return get(desc)
    return message_factory.MessageFactory(desc.file.pool).GetPrototype(desc)


class Column:
    """A kind of caller. token(fresh) gives the authorization to present:
    None (no header), a raw header value, or a token of the column's main
    session (fresh: of a new session of the same account)."""

    def __init__(self, name, srv, phone=None, level=1, roles=("citizen",), dept="",
                 req_dept=OTHER_DEPT, stale=False, header=None):
        self.name, self.srv, self.phone = name, srv, phone
        self.level, self.roles, self.dept = level, set(roles), dept
        self.req_dept, self.stale, self.header = req_dept, stale, header
        self.main = None

    @property
    def signed_in(self):
        return self.phone is not None

    def _session(self):
        who = t.sign_in(self.srv, self.phone)
        claims = t.jwt_decode(who.access)[1]
        assert claims["acr"] == self.level, (self.name, claims)
        assert set(claims["roles"]) == self.roles, (self.name, claims)
        if self.stale:
            now = int(time.time())
            who.resp.access_token = t.forge_token(self.srv, base=claims, iat=now, nbf=now,
                                                  exp=now + 600, auth_time=now - 3600)
        return who

    def metadata(self, fresh=False):
        if self.header is not None:
            return [("authorization", self.header)]
        if not self.signed_in:
            return None
        if fresh:
            return self._session().md()
        if self.main is None:
            self.main = self._session()
        return self.main.md()

    def account_id(self):
        return self.main.account_id if self.main else None


def expected(rule, col):
    """None when the runtime must let col call a method of rule, else the
    (code, reason) it must answer."""
    if rule == PUBLIC:
        return None
    if col.header is not None:
        return (UNAUTH, "TOKEN_MALFORMED")
    if not col.signed_in:
        return (UNAUTH, "TOKEN_MISSING")
    staff = col.roles & {"officer", "admin"}
    if rule in (OFFICER, STAFF) and not staff:
        return (DENIED, "ROLE_REQUIRED")
    if rule == ADMIN and "admin" not in col.roles:
        return (DENIED, "ROLE_REQUIRED")
    if rule == DATA_FEED and not col.roles & {"data-feed", "admin"}:
        return (DENIED, "ROLE_REQUIRED")
    if rule == REAL_NAME and col.level < 2:
        return (DENIED, "LEVEL_TOO_LOW")
    if rule in (REAL_PERSON, REAL_PERSON_STEP_UP) and col.level < 3:
        return (DENIED, "LEVEL_TOO_LOW")
    if rule == STEP_UP and col.stale:
        return (UNAUTH, "STEP_UP_REQUIRED")
    if rule == OFFICER and "admin" not in col.roles and col.req_dept != col.dept:
        return (DENIED, "DEPARTMENT_MISMATCH")
    return None


def runtime_refusal(err):
    """(code, reason) when err is the runtime's access refusal, else None."""
    code, reason = t.error_reason(err)
    if code in (UNAUTH, DENIED) and reason in t.ACCESS_REASONS:
        return (code, reason)
    return None


class AccessMatrixTest(t.TestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.srv = t.Server(extra_env=t.AUTH_ENV).__enter__()

    @classmethod
    def tearDownClass(cls):
        cls.srv.__exit__(None, None, None)

    # --- reflection -------------------------------------------------------
    def reflect(self):
        """{path: MethodDescriptor} of every method the server offers."""
        return t.reflect_methods(self.srv)

    # --- calling ----------------------------------------------------------
    def build_request(self, m, col):
        req = _message_class(m.input_type)()
        f = m.input_type.fields_by_name.get("department")
        if f is not None and f.type == f.TYPE_STRING:
            req.department = col.req_dept
        return req

    def call(self, path, m, col, fresh=False):
        """(outcome cell text, refusal (code, reason) or None, response or None)."""
        out_cls = _message_class(m.output_type)
        kw = dict(request_serializer=lambda x: x.SerializeToString(),
                  response_deserializer=out_cls.FromString)
        timeout = 20
        if m.client_streaming:
            one = self.srv.channel.stream_unary(path, **kw)
            fn = lambda req, **k: one(iter([req]), **k)  # noqa: E731
        elif m.server_streaming:
            # a protected server stream: its first message, or a quiet
            # stream past a short deadline, means the runtime let it through
            stream = self.srv.channel.unary_stream(path, **kw)

            def fn(req, **k):
                return next(iter(stream(req, **k)), None)
            timeout = 1.5
        else:
            fn = self.srv.channel.unary_unary(path, **kw)
        try:
            resp = fn(self.build_request(m, col), metadata=col.metadata(fresh), timeout=timeout)
            return "ok", None, resp, None
        except grpc.RpcError as e:
            refusal = runtime_refusal(e)
            code, reason = t.error_reason(e)
            if refusal:
                return reason, refusal, None, (code, reason)
            return "ok:" + (reason or code.name), None, None, (code, reason)

    def columns(self):
        srv = self.srv

        def citizen(level):
            phone = t.random_phone()
            who = t.sign_in(srv, phone)
            if level > 1:
                t.set_level(srv, who, level)
            return phone

        officer = t.random_phone()
        t.make_staff(srv, officer, "officer", OWN_DEPT)
        admin = t.random_phone()
        t.make_staff(srv, admin, "admin")
        return [
            Column("none", srv),
            Column("bad", srv, header="Bearer abc"),
            Column("L1", srv, citizen(1)),
            Column("L2", srv, citizen(2), level=2),
            Column("L3", srv, citizen(3), level=3),
            Column("off@own", srv, officer, roles=("citizen", "officer"), dept=OWN_DEPT,
                   req_dept=OWN_DEPT),
            Column("off@other", srv, officer, roles=("citizen", "officer"), dept=OWN_DEPT),
            Column("admin", srv, admin, roles=("citizen", "admin")),
            Column("stale", srv, citizen(1), stale=True),
        ]

    # --- the tests ----------------------------------------------------------
    def test_every_method_has_a_rule(self):
        offered = set(self.reflect())
        missing = sorted(offered - set(RULES))
        self.assertFalse(missing, "methods without an access rule: %s -- add them to the "
                         "access matrix (RULES in %s)" % (missing, __file__))
        stale = sorted(set(RULES) - offered)
        self.assertFalse(stale, "RULES names methods the server does not offer: %s" % stale)

    def test_public_streaming_methods_ignore_tokens(self):
        methods = self.reflect()
        streaming = sorted(p for p, m in methods.items()
                           if m.client_streaming or m.server_streaming)
        self.assertTrue(streaming)
        for path in streaming:
            if RULES.get(path) != PUBLIC:
                # protected client streams (one message) and server streams
                # (the first message) are in the matrix; bidi ones are not
                self.assertFalse(methods[path].client_streaming and
                                 methods[path].server_streaming,
                                 "%s: a protected bidi stream needs its own access test" % path)
                continue
            m = methods[path]
            for md in (None, [("authorization", "Bearer abc")]):
                with self.subTest(method=path, auth=bool(md)):
                    self.exercise_stream(path, m, md)

    def exercise_stream(self, path, m, md):
        """One short call of a streaming method; fails on an access refusal."""
        in_cls, out_cls = _message_class(m.input_type), _message_class(m.output_type)
        kw = dict(request_serializer=lambda x: x.SerializeToString(),
                  response_deserializer=out_cls.FromString)
        req = in_cls()
        for name, value in (("count", 1), ("text", "hi"), ("list_services", "")):
            if name in m.input_type.fields_by_name:
                setattr(req, name, value)
        ch = self.srv.channel
        try:
            if m.client_streaming and m.server_streaming:
                next(iter(ch.stream_stream(path, **kw)(iter([req]), metadata=md, timeout=20)))
            elif m.client_streaming:
                ch.stream_unary(path, **kw)(iter([req]), metadata=md, timeout=20)
            else:
                call = ch.unary_stream(path, **kw)(req, metadata=md, timeout=20)
                next(iter(call))
                call.cancel()
        except grpc.RpcError as e:
            self.assertIsNone(runtime_refusal(e), "%s refused: %s %s" %
                              (path, e.code(), e.details()))

    def test_access_matrix(self):
        methods = self.reflect()
        unary = [p for p in sorted(methods) if p in RULES and
                 (not (methods[p].client_streaming or methods[p].server_streaming) or
                  (RULES[p] != PUBLIC and
                   not (methods[p].client_streaming and methods[p].server_streaming)))]
        order = [p for p in unary if p not in DESTRUCTIVE] + [p for p in DESTRUCTIVE
                                                                if p in unary]
        cols = self.columns()
        cells, problems = {}, []
        public_outcome = {}
        for path in order:
            rule = RULES[path]
            m = methods[path]
            for col in cols:
                text, refusal, resp, status = self.call(path, m, col, fresh=path in DESTRUCTIVE)
                cells[(path, col.name)] = text
                want = expected(rule, col)
                if want is None and refusal is not None:
                    problems.append("%s as %s: refused %s %s, expected allowed (%s)" %
                                    (path, col.name, refusal[0].name, refusal[1], rule))
                elif want is not None and refusal != want:
                    problems.append("%s as %s: got %s, expected %s %s (%s)" %
                                    (path, col.name, status or "OK", want[0].name, want[1],
                                     rule))
                if rule == PUBLIC:
                    # a token, if sent, is not looked at
                    first = public_outcome.setdefault(path, status)
                    if status != first:
                        problems.append("%s (public) as %s: %s, but %s without a token" %
                                        (path, col.name, status, first))
                if resp is not None and col.main is not None and path not in DESTRUCTIVE and \
                        "account_id" in m.output_type.fields_by_name and \
                        path.startswith("/fxb.v1.DiagService/Probe"):
                    if resp.account_id != col.account_id():
                        problems.append("%s as %s: admitted as account %r, expected %r" %
                                        (path, col.name, resp.account_id, col.account_id()))
        self.print_matrix(order, cols, cells)
        self.assertFalse(problems, "\n" + "\n".join(problems))

    def print_matrix(self, order, cols, cells):
        short = {"TOKEN_MISSING": "MISSING", "TOKEN_MALFORMED": "MALFORMED",
                 "LEVEL_TOO_LOW": "LEVEL", "ROLE_REQUIRED": "ROLE",
                 "DEPARTMENT_MISMATCH": "DEPT", "STEP_UP_REQUIRED": "STEP_UP"}
        width = max(len(p) for p in order) + 2
        cw = [max(10, len(c.name) + 1) for c in cols]
        lines = ["", "access matrix (ok = admitted by the runtime; ok:X = the handler "
                 "answered X; else the refusal reason)",
                 "%-*s %-12s" % (width, "method", "rule") +
                 "".join("%-*s" % (w, c.name) for c, w in zip(cols, cw))]
        for p in order:
            row = "%-*s %-12s" % (width, p, RULES[p])
            for c, w in zip(cols, cw):
                v = cells[(p, c.name)]
                v = short.get(v, v)
                if v.startswith("ok:"):
                    v = "ok*"
                row += "%-*s" % (w, v)
            lines.append(row)
        lines.append("(ok* = admitted; the handler refused the empty request)")
        sys.stderr.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    t.main()
