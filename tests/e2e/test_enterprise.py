"""fxb.v1.EnterpriseService end to end: a real-person-verified (L3) citizen
binds an enterprise by its unified social credit code (GB 32100-2015) once
the enterprise registry (the dev registry imported by `fxb-admin
enterprise-registry import`) names their verified identity as its legal
representative; lists and unbinds it; bindings and unbindings are audited
with ids only.

People are verified to L3 as in test_identity.py: the dev population
registry, fxb-ekyc-sim attestations, CompleteVerification. Every test uses
fresh random ID numbers, names, phones and credit codes: the shared Redis
keeps bindings between tests and runs."""
import os
import tempfile

import grpc

import fxbtest as t
from people import (People, bad_check, ent_pb, make_company, make_id, make_uscc,
                    uscc_check_char)

SVC = "/fxb.v1.EnterpriseService/"

INVALID = grpc.StatusCode.INVALID_ARGUMENT
DENIED = grpc.StatusCode.PERMISSION_DENIED
NOT_FOUND = grpc.StatusCode.NOT_FOUND
EXHAUSTED = grpc.StatusCode.RESOURCE_EXHAUSTED


class EnterpriseTest(t.TestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.srv = t.Server(extra_env=t.AUTH_ENV).__enter__()
        cls.data = cls.srv.env["FXB_DATA_DIR"]
        cls.key = os.path.join(cls.data, "keys", "ekyc", "ekyc-dev.pem")
        cls.tmp = tempfile.mkdtemp(prefix="fxb-e2e-ent.")
        cls.people = People(cls.srv, cls.tmp)

    @classmethod
    def tearDownClass(cls):
        cls.srv.__exit__(None, None, None)

    # --- helpers (people.py) -------------------------------------------------------
    def admin_import(self, command, lines, expect_ok=True):
        return self.people.admin_import(command, lines, expect_ok)

    def l3_person(self):
        """A fresh person verified to L3: (SignedIn with an acr 3 token, id)."""
        return self.people.l3_person()

    def enterprise(self, rep_id):
        """A fresh enterprise in the registry with rep_id as legal rep:
        (code, name)."""
        return self.people.enterprise(rep_id)

    def call(self, method, req, who, resp_cls):
        return self.srv.unary(SVC + method, type(req), resp_cls)(req, metadata=who.md(),
                                                                   timeout=20)

    def bind(self, who, code):
        return self.call("BindEnterprise", ent_pb().BindEnterpriseRequest(credit_code=code), who,
                         ent_pb().Enterprise)

    def bind_fails(self, who, code, status, reason):
        with self.assertRaises(grpc.RpcError) as cm:
            self.bind(who, code)
        self.assertRpcError(cm.exception, status, reason)

    def mine(self, who):
        return list(self.call("ListMyEnterprises", ent_pb().ListMyEnterprisesRequest(), who,
                              ent_pb().ListMyEnterprisesResponse).enterprises)

    def unbind(self, who, eid):
        return self.call("UnbindEnterprise", ent_pb().UnbindEnterpriseRequest(enterprise_id=eid),
                         who, ent_pb().UnbindEnterpriseResponse)

    def audit(self):
        """Every audit record as a dict of str."""
        out = []
        for _id, fields in t.redis_cmd(self.srv.redis_url, "XRANGE", "fxb:audit", "-", "+"):
            out.append({fields[i].decode(): fields[i + 1].decode()
                        for i in range(0, len(fields), 2)})
        return out

    # --- the rules -------------------------------------------------------------
    def test_legal_representative_binds_lists_rebinds_and_unbinds_with_audit(self):
        who, idn = self.l3_person()
        code, name = self.enterprise(idn)

        ent = self.bind(who, code)
        self.assertRegex(ent.enterprise_id, r"^e[0-9a-f]{24}$")
        self.assertEqual(ent.credit_code, code)
        self.assertEqual(ent.name, name)
        self.assertEqual(ent.role, "legal_representative")
        self.assertGreater(ent.bound_at_ms, 0)

        listed = self.mine(who)
        self.assertEqual([e.enterprise_id for e in listed], [ent.enterprise_id])
        self.assertEqual(listed[0], ent)

        # idempotent: same id, same binding time, still one entry
        again = self.bind(who, code)
        self.assertEqual(again, ent)
        self.assertEqual(len(self.mine(who)), 1)

        self.unbind(who, ent.enterprise_id)
        self.assertEqual(self.mine(who), [])
        with self.assertRaises(grpc.RpcError) as cm:
            self.unbind(who, ent.enterprise_id)
        self.assertRpcError(cm.exception, NOT_FOUND, "ENTERPRISE_NOT_BOUND")

        records = [r for r in self.audit() if r.get("subject") == ent.enterprise_id]
        self.assertEqual([r["action"] for r in records], ["enterprise.bind", "enterprise.unbind"])
        for r in records:
            self.assertEqual(r["actor"], who.account_id)
            self.assertGreater(int(r["at_ms"]), 0)
            text = repr(r)
            for secret in (idn, name, code):
                self.assertNotIn(secret, text)

        # the enterprise stays a subject and may be bound again
        self.assertEqual(self.bind(who, code).enterprise_id, ent.enterprise_id)

    def test_enterprise_id_is_derived_from_the_code(self):
        who, idn = self.l3_person()
        code, _ = self.enterprise(idn)
        first = self.bind(who, code)
        self.unbind(who, first.enterprise_id)
        self.assertEqual(self.bind(who, code.lower()).enterprise_id, first.enterprise_id)

    def test_an_L1_account_is_refused_before_any_check(self):
        who = t.sign_in(self.srv)
        self.bind_fails(who, make_uscc(), DENIED, "LEVEL_TOO_LOW")
        self.assertEqual(self.mine(who), [])

    def test_someone_elses_enterprise_is_not_legal_representative(self):
        who, _ = self.l3_person()
        code, _ = self.enterprise(make_id())
        self.bind_fails(who, code, DENIED, "NOT_LEGAL_REPRESENTATIVE")
        self.assertEqual(self.mine(who), [])

    def test_the_code_is_checked_before_the_registry(self):
        who, idn = self.l3_person()
        code, _ = self.enterprise(idn)
        self.bind_fails(who, bad_check(code), INVALID, "USCC_CHECK")
        self.bind_fails(who, code[:17], INVALID, "USCC_FORMAT")
        self.bind_fails(who, "", INVALID, "USCC_FORMAT")
        self.bind_fails(who, code + "0", INVALID, "USCC_FORMAT")
        org_bad = code[:16] + next(c for c in "0123456789X" if c != code[16])
        org_bad = org_bad + uscc_check_char(org_bad)
        self.bind_fails(who, org_bad, INVALID, "USCC_ORG_CHECK")

    def test_a_valid_code_the_registry_does_not_hold_is_not_found(self):
        who, _ = self.l3_person()
        self.bind_fails(who, make_uscc(), NOT_FOUND, "ENTERPRISE_UNKNOWN")

    def test_unbinding_what_one_does_not_hold(self):
        who, idn = self.l3_person()
        other = t.sign_in(self.srv)
        code, _ = self.enterprise(idn)
        ent = self.bind(who, code)
        with self.assertRaises(grpc.RpcError) as cm:
            self.unbind(other, ent.enterprise_id)
        self.assertRpcError(cm.exception, NOT_FOUND, "ENTERPRISE_NOT_BOUND")
        with self.assertRaises(grpc.RpcError) as cm:
            self.unbind(who, "../" + ent.enterprise_id)
        self.assertRpcError(cm.exception, INVALID, "ENTERPRISE_ID_INVALID")
        self.assertEqual(len(self.mine(who)), 1)

    def test_at_most_50_enterprises_per_account(self):
        who, idn = self.l3_person()
        codes = [make_uscc() for _ in range(51)]
        r = self.admin_import("enterprise-registry",
                              ["%s,%s,%s" % (c, make_company(), idn) for c in codes])
        self.assertIn("imported 51 enterprise registry records, 0 bad lines", r.stdout)
        for c in codes[:50]:
            self.bind(who, c)
        self.bind_fails(who, codes[50], EXHAUSTED, "ENTERPRISES_TOO_MANY")
        self.assertEqual(len(self.mine(who)), 50)
        self.bind(who, codes[0])  # re-binding a held one stays idempotent

    # --- the dev registry import ----------------------------------------------------
    def test_import_reports_bad_lines_by_number_only(self):
        idn, code = make_id(), make_uscc()
        lines = ["# credit_code,name,legal_rep_id_number",
                 "%s,%s,%s" % (code, "新乡市某某有限公司,分公司", idn),
                 '{"credit_code": "%s", "name": "某某合作社", "legal_rep_id_number": "%s"}'
                 % (make_uscc().lower(), idn),
                 "%s,某某公司,%s" % (bad_check(code), idn),
                 "%s,某某公司,%s" % (make_uscc(), idn[:17] + ("0" if idn[17] != "0" else "1")),
                 "only,two",
                 ""]
        r = self.admin_import("enterprise-registry", lines, expect_ok=False)
        self.assertEqual(r.returncode, 1)
        self.assertIn("imported 2 enterprise registry records, 3 bad lines", r.stdout)
        self.assertIn("line 4: USCC_CHECK", r.stderr)
        self.assertIn("line 5: ", r.stderr)
        self.assertIn("line 6: ", r.stderr)
        for secret in (idn, code, idn[:17], "某某"):
            self.assertNotIn(secret, r.stderr + r.stdout)
        # only the index of the ID number is stored
        keys = t.redis_cmd(self.srv.redis_url, "KEYS", "fxb:entreg:dev:%s" % code)
        self.assertEqual(len(keys), 1)
        rec = t.redis_cmd(self.srv.redis_url, "HGETALL", keys[0])
        self.assertNotIn(idn.encode(), b"".join(rec))
        self.assertIn("新乡市某某有限公司,分公司".encode(), rec)

    def test_import_is_refused_in_production(self):
        path = os.path.join(self.tmp, "prod.csv")
        with open(path, "w") as f:
            f.write("%s,某某公司,%s\n" % (make_uscc(), make_id()))
        r = t.run_admin(["enterprise-registry", "import", path], redis_url=self.srv.redis_url,
                        env={"FXB_DATA_DIR": self.data, "FXB_ENV": "production"})
        self.assertEqual(r.returncode, 2)
        self.assertIn("refused", r.stderr)


if __name__ == "__main__":
    t.main()
