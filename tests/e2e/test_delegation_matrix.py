"""The method access matrix for delegated tokens (ProxyService.ExchangeToken):
every method the server offers (found by reflection, so a new method cannot
slip through) is either

  public      the runtime does not look at the token at all (PUBLIC below);
  delegable   named in DELEGABLE with the capability (and item check) its
              table entry declares: a delegated token in scope is admitted,
              one out of scope is refused PERMISSION_DENIED OUT_OF_SCOPE, one
              of a revoked grant GRANT_REVOKED, one of an expired grant
              GRANT_EXPIRED (a token forged with the server's key at the
              server's moved clock, so the grant check is what refuses it);
  anything else: refused PERMISSION_DENIED DELEGATION_NOT_ALLOWED to a
              delegated token that is in scope for everything.

A method named in DELEGABLE or PUBLIC that the server does not offer fails
the test: the tables follow the server."""
import sys

import grpc
from google.protobuf import message_factory

import fxbtest as t
from people import People
from test_proxy import MIN, ProxyMixin, new_item

DENIED = grpc.StatusCode.PERMISSION_DENIED
UNAUTH = grpc.StatusCode.UNAUTHENTICATED

# The scopes of the "everything" grant (the list) and of a grant
# that holds none of the capabilities the delegable methods need.
ALL_SCOPES = "inbox.read filing.submit filing.read benefits.read category:education item:{item}"
NONE_SCOPES = "benefits.read item:{item}"
# ... and, for the methods that need benefits.read, a grant without it.
NONE_BENEFITS_SCOPES = "inbox.read item:{item}"

# path -> how to build a request that is in scope for the "everything" grant
# (item: the request's item_code field names the grant's item).
DELEGABLE = {
    "/fxb.v1.DiagService/ProbeDelegated": {"scope": "inbox.read"},
    "/fxb.v1.DiagService/ProbeItem": {"scope": "filing.submit", "item_field": "item_code"},
    "/fxb.v1.InboxService/ListMessages": {"scope": "inbox.read"},
    "/fxb.v1.InboxService/MarkRead": {"scope": "inbox.read"},
    "/fxb.v1.InboxService/Subscribe": {"scope": "inbox.read"},
    "/fxb.v1.MaterialService/UploadMaterial": {"scope": "filing.submit"},
    "/fxb.v1.MaterialService/ListWallet": {"scope": "filing.read"},
    "/fxb.v1.MaterialService/GetMaterial": {"scope": "filing.read"},
    "/fxb.v1.MaterialService/DeleteMaterial": {"scope": "filing.submit"},
    "/fxb.v1.FilingService/CreateApplication": {"scope": "filing.submit"},
    "/fxb.v1.FilingService/AttachMaterials": {"scope": "filing.submit"},
    "/fxb.v1.FilingService/SubmitApplication": {"scope": "filing.submit"},
    "/fxb.v1.FilingService/SupplementMaterials": {"scope": "filing.submit"},
    "/fxb.v1.FilingService/WithdrawApplication": {"scope": "filing.submit"},
    "/fxb.v1.FilingService/GetApplication": {"scope": "filing.read"},
    "/fxb.v1.FilingService/ListApplications": {"scope": "filing.read"},
    "/fxb.v1.AppointmentService/BookAppointment": {"scope": "filing.submit",
                                                   "item_field": "item_code"},
    "/fxb.v1.AppointmentService/ListAppointments": {"scope": "filing.read"},
    "/fxb.v1.RatingService/RateApplication": {"scope": "filing.submit"},
    "/fxb.v1.AppointmentService/CancelAppointment": {"scope": "filing.submit"},
    "/fxb.v1.BenefitService/ListMyEntitlements": {"scope": "benefits.read"},
    "/fxb.v1.BenefitService/GetMyEntitlement": {"scope": "benefits.read"},
}

# Methods the runtime answers without looking at a token.
PUBLIC = {
    "/grpc.health.v1.Health/Check",
    "/grpc.health.v1.Health/Watch",
    "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
    "/fxb.v1.SystemService/GetInfo",
    "/fxb.v1.AuthService/SendCode",
    "/fxb.v1.AuthService/SignInWithCode",
    "/fxb.v1.AuthService/SignInWithPassword",
    "/fxb.v1.AuthService/Refresh",
    "/fxb.v1.DiagService/Echo",
    "/fxb.v1.DiagService/Collect",
    "/fxb.v1.DiagService/Ticks",
    "/fxb.v1.DiagService/Chat",
    "/fxb.v1.DiagService/SetClockOffset",
    "/fxb.v1.CatalogService/ListItems",
    "/fxb.v1.CatalogService/SearchItems",
    "/fxb.v1.CatalogService/GetItem",
    "/fxb.v1.CatalogService/ListCategories",
    "/fxb.v1.CatalogService/ListDepartments",
    "/fxb.v1.CatalogService/ListBundles",
    "/fxb.v1.CatalogService/GetBundle",
    "/fxb.v1.CalendarService/GetCalendar",
    "/fxb.v1.CalendarService/AddWorkingDays",
    "/fxb.v1.AppointmentService/ListSlots",
    "/fxb.v1.RatingService/GetPublicResults",
    "/fxb.v1.ProfileService/GetSchema",
    "/fxb.v1.DiagService/RunSweeper",
    "/fxb.v1.BenefitService/ListPublishedPolicies",
    "/fxb.v1.DiagService/SyncBenefitEngine",
}

# Reasons that mean the runtime refused the call (anything else is the
# handler's answer to an empty request: admitted).
REFUSALS = set(t.ACCESS_REASONS) | {"OUT_OF_SCOPE", "GRANT_REVOKED", "GRANT_EXPIRED",
                                    "GRANT_NOT_ACTIVE"}


def _message_class(desc):
    get = getattr(message_factory, "GetMessageClass", None)
    if get is not None:
        return get(desc)
    return message_factory.MessageFactory(desc.file.pool).GetPrototype(desc)


class DelegationMatrixTest(ProxyMixin, t.TestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.srv = t.Server(extra_env=dict(t.AUTH_ENV)).__enter__()
        cls.people = People(cls.srv)

    @classmethod
    def tearDownClass(cls):
        cls.srv.__exit__(None, None, None)

    def tearDown(self):
        self.reset_clock()

    # --- reflection ---------------------------------------------------------------
    def reflect(self):
        """{path: MethodDescriptor} of every method the server offers."""
        return t.reflect_methods(self.srv)

    # --- calling --------------------------------------------------------------------
    def call(self, path, m, token, item=None):
        """Calls a unary method (or a client stream with one message) with an
        empty request (item_code set when given); returns (code, reason,
        response)."""
        req = _message_class(m.input_type)()
        if item is not None and "item_code" in m.input_type.fields_by_name:
            req.item_code = item
        out_cls = _message_class(m.output_type)
        kw = dict(request_serializer=lambda x: x.SerializeToString(),
                  response_deserializer=out_cls.FromString)
        timeout = 20
        if m.client_streaming:
            one = self.srv.channel.stream_unary(path, **kw)
            fn = lambda r, **k: one(iter([r]), **k)  # noqa: E731
        elif m.server_streaming:
            # the first message, or a quiet stream past a short deadline:
            # admitted
            stream = self.srv.channel.unary_stream(path, **kw)

            def fn(r, **k):
                return next(iter(stream(r, **k)), None)
            timeout = 1.5
        else:
            fn = self.srv.channel.unary_unary(path, **kw)
        md = t.bearer(token) if token else None
        try:
            return grpc.StatusCode.OK, None, fn(req, metadata=md, timeout=timeout)
        except grpc.RpcError as e:
            code, reason = t.error_reason(e)
            return code, reason, None

    @staticmethod
    def refused(outcome):
        code, reason, _ = outcome
        return (code, reason) if code in (DENIED, UNAUTH) and reason in REFUSALS else None

    def setup_grants(self):
        """Principal, agent and the grants of the matrix:
        all (in scope for everything), none (no needed capability), revoked
        (then revoked), short (ends 10 minutes from now). Returns a dict."""
        principal, agent = self.people.l3_person()[0], self.people.l2_person()[0]
        item, cat_item = new_item("MX"), new_item("MXC")
        # a catalogue item of the granted category
        t.redis_cmd(self.srv.redis_url, "HSET", "fxb:item:" + cat_item, "category", "education")
        # and one of a category the grants do not name
        tax_item = new_item("MXT")
        t.redis_cmd(self.srv.redis_url, "HSET", "fxb:item:" + tax_item, "category", "police")
        all_scopes = ALL_SCOPES.format(item=item).split()
        g_all, tok_all = self.delegated(principal, agent, all_scopes)
        g_none, tok_none = self.delegated(principal, agent,
                                          NONE_SCOPES.format(item=item).split())
        _, tok_none_benefits = self.delegated(principal, agent,
                                              NONE_BENEFITS_SCOPES.format(item=item).split())
        g_rev, tok_rev = self.delegated(principal, agent, all_scopes + ["category:tax"])
        now = self.server_now_ms()
        g_short, tok_short = self.delegated(principal, agent, all_scopes + ["category:health"],
                                            valid_until_ms=now + 10 * MIN)
        self.revoke(principal, g_rev.grant_id)
        # the same powers for an enterprise, through its legal representative
        rep, _, ent = self.people.enterprise_with_rep()
        g_ent, tok_ent = self.delegated(rep, agent, all_scopes,
                                        enterprise_id=ent.enterprise_id)
        return dict(principal=principal, agent=agent, item=item, cat_item=cat_item,
                    tax_item=tax_item,
                    all=tok_all, none=tok_none, none_benefits=tok_none_benefits,
                    revoked=tok_rev, short=tok_short,
                    g_all=g_all, ent=tok_ent, enterprise_id=ent.enterprise_id, rep=rep)

    # --- the tests ---------------------------------------------------------------------
    def test_the_tables_name_only_methods_the_server_offers(self):
        offered = self.reflect()
        for table, names in (("DELEGABLE", set(DELEGABLE)), ("PUBLIC", PUBLIC)):
            gone = sorted(names - set(offered))
            self.assertFalse(gone, "%s names methods the server does not offer: %s" %
                             (table, gone))
        streaming = sorted(p for p, m in offered.items()
                           if m.client_streaming or m.server_streaming)
        for p in streaming:
            # protected client streams are called with one message, server
            # streams read for their first message; bidi ones must be public
            if offered[p].client_streaming and offered[p].server_streaming:
                self.assertIn(p, PUBLIC, "%s: a protected bidi stream needs its own test" % p)
        for p in DELEGABLE:
            self.assertNotIn(p, PUBLIC)

    def test_delegation_matrix(self):
        methods = self.reflect()
        missing = sorted(set(DELEGABLE) - set(methods))
        self.assertFalse(missing, "DELEGABLE names methods the server does not offer: %s" %
                         missing)
        unary = sorted(p for p, m in methods.items()
                       if not (m.client_streaming and m.server_streaming) and
                       (not (m.client_streaming or m.server_streaming) or p not in PUBLIC))
        g = self.setup_grants()
        problems, cells = [], {}

        def expect(path, col, outcome, want):
            cells[(path, col)] = outcome[1] or outcome[0].name
            got = self.refused(outcome)
            if want is None and got is not None:
                problems.append("%s [%s]: refused %s %s, expected admitted" %
                                (path, col, got[0].name, got[1]))
            elif want is not None and got != want:
                problems.append("%s [%s]: got %s %s, expected %s %s" %
                                (path, col, outcome[0].name, outcome[1], want[0].name, want[1]))

        # sign-outs last: a delegated token must not end the agent's session
        order = [p for p in unary if "SignOut" not in p] + [p for p in unary if "SignOut" in p]
        for path in order:
            m = methods[path]
            if path in PUBLIC:
                # the token is not looked at: the same answer as without one
                with_token = self.call(path, m, g["all"])
                without = self.call(path, m, None)
                cells[(path, "all")] = with_token[1] or with_token[0].name
                if with_token[:2] != without[:2]:
                    problems.append("%s (public): %s %s with a delegated token, %s %s "
                                    "without" % (path, with_token[0].name, with_token[1],
                                                 without[0].name, without[1]))
                continue
            if path not in DELEGABLE:
                expect(path, "all", self.call(path, m, g["all"], g["item"]),
                       (DENIED, "DELEGATION_NOT_ALLOWED"))
                expect(path, "enterprise", self.call(path, m, g["ent"], g["item"]),
                       (DENIED, "DELEGATION_NOT_ALLOWED"))
                continue
            spec = DELEGABLE[path]
            item = g["item"] if spec.get("item_field") else None
            out = self.call(path, m, g["all"], item)
            expect(path, "all", out, None)
            if out[2] is not None and "account_id" in m.output_type.fields_by_name:
                if out[2].account_id != g["principal"].account_id or \
                        out[2].agent_id != g["agent"].account_id:
                    problems.append("%s: admitted as %r for agent %r" %
                                    (path, out[2].account_id, out[2].agent_id))
            out = self.call(path, m, g["ent"], item)
            expect(path, "enterprise", out, None)
            if out[2] is not None and "account_id" in m.output_type.fields_by_name and \
                    out[2].account_id != g["enterprise_id"]:
                problems.append("%s: an enterprise's token admitted as %r" %
                                (path, out[2].account_id))
            none = g["none_benefits"] if spec["scope"] == "benefits.read" else g["none"]
            expect(path, "none", self.call(path, m, none, item), (DENIED, "OUT_OF_SCOPE"))
            expect(path, "revoked", self.call(path, m, g["revoked"], item),
                   (DENIED, "GRANT_REVOKED"))
            if spec.get("item_field"):
                expect(path, "category", self.call(path, m, g["all"], g["cat_item"]), None)
                expect(path, "other item", self.call(path, m, g["all"], new_item("NO")),
                       (DENIED, "OUT_OF_SCOPE"))
                expect(path, "other category", self.call(path, m, g["all"], g["tax_item"]),
                       (DENIED, "OUT_OF_SCOPE"))
                expect(path, "no item", self.call(path, m, g["all"], ""),
                       (DENIED, "OUT_OF_SCOPE"))

        # the agent's and the principal's sessions survived every call
        for who in (g["agent"], g["principal"], g["rep"]):
            self.assertEqual(t.auth_call(self.srv, "GetMe", t.auth_pb().GetMeRequest(),
                                         token=who.access).account_id, who.account_id)
        self.assertEqual(self.get(g["principal"], g["g_all"].grant_id).status,
                         t.pb("fxb/v1/proxy").GRANT_STATUS_ACTIVE)

        # expired: the server's clock past the short grant's end; the token is
        # re-signed at the server's time so that only the grant check refuses it
        try:
            self.clock(11 * MIN)
            expired = self.at_server_time(g["short"])
            still = self.at_server_time(g["all"])
            for path in sorted(DELEGABLE):
                m = methods[path]
                item = g["item"] if DELEGABLE[path].get("item_field") else None
                expect(path, "expired", self.call(path, m, expired, item),
                       (DENIED, "GRANT_EXPIRED"))
                expect(path, "all, later", self.call(path, m, still, item), None)
        finally:
            self.reset_clock()
        self.print_matrix(order, cells)
        self.assertFalse(problems, "\n" + "\n".join(problems))

    def print_matrix(self, order, cells):
        cols = ["all", "enterprise", "none", "revoked", "category", "other item",
                "other category", "no item", "expired", "all, later"]
        width = max(len(p) for p in order) + 2
        lines = ["", "delegation matrix (OK / handler code = admitted; else the refusal)",
                 "%-*s" % (width, "method") + "".join("%-23s" % c for c in cols)]
        for p in order:
            lines.append("%-*s" % (width, p) + "".join(
                "%-23s" % cells.get((p, c), "") for c in cols))
        sys.stderr.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    t.main()
