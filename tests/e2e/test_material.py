"""fxb.v1.MaterialService end to end: the material wallet of a subject
(a person, or an enterprise through a delegated agent). Uploads are
streamed (a header, then chunks), judged by their leading bytes, checked
against what was announced, content-addressed under the server's data
directory, and refused without leaving anything behind; licences come
from `fxb-admin licence issue` (development only) with their number
sealed and shown masked.

Most tests run against a server with FXB_UPLOAD_MAX_BYTES = 64 KiB, so
the limit is cheap to cross; one test uses the default 10 MiB boundary.
Delegated tokens are made as test_inbox.py makes them (a grant written as
ProxyService records it, the token signed with the server's key): how
grants are made is test_proxy.py's business."""
import hashlib
import os
import secrets
import threading
import time
import uuid

import grpc

import fxbtest as t

SVC = "/fxb.v1.MaterialService/"
INVALID = grpc.StatusCode.INVALID_ARGUMENT
EXHAUSTED = grpc.StatusCode.RESOURCE_EXHAUSTED
PRECONDITION = grpc.StatusCode.FAILED_PRECONDITION
NOT_FOUND = grpc.StatusCode.NOT_FOUND
DENIED = grpc.StatusCode.PERMISSION_DENIED

SMALL_MAX = 65536
DEFAULT_MAX = 10 * 1024 * 1024
WALLET_MAX = 200
CHUNK = 262144

PDF = b"%PDF-1.7\n" + b"1 0 obj << /Type /Catalog >> endobj\n" * 20 + b"%%EOF\n"
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(range(256)) * 3 + b"\xff\xd9"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\x0dIHDR" + os.urandom(300)
NUMBER = "410702202400012345"


def mat_pb():
    return t.pb("fxb/v1/material")


def sha(data):
    return hashlib.sha256(data).hexdigest()


def new_eid():
    return "e" + secrets.token_hex(12)


class MaterialTest(t.TestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        env = dict(t.AUTH_ENV)
        env["FXB_UPLOAD_MAX_BYTES"] = str(SMALL_MAX)
        cls.srv = t.Server(extra_env=env).__enter__()

    @classmethod
    def tearDownClass(cls):
        cls.srv.__exit__(None, None, None)

    # --- helpers -------------------------------------------------------------
    @property
    def data_dir(self):
        return self.srv.env["FXB_DATA_DIR"]

    def tmp_files(self):
        return os.listdir(os.path.join(self.data_dir, "blobs", "tmp"))

    def blob_path(self, digest):
        return os.path.join(self.data_dir, "blobs", "sha256", digest[:2], digest[2:4], digest)

    def md(self, who):
        return who.md() if hasattr(who, "md") else who

    def chunks(self, data, name="证明材料.pdf", chunk=CHUNK, header=True, **hdr):
        M = mat_pb()
        if header:
            yield M.UploadChunk(header=M.UploadHeader(file_name=name, **hdr))
        for i in range(0, len(data), chunk):
            yield M.UploadChunk(data=data[i:i + chunk])

    def upload_call(self, messages, who, timeout=60):
        M = mat_pb()
        fn = self.srv.stream_unary(SVC + "UploadMaterial", M.UploadChunk, M.Material)
        return fn(iter(messages), metadata=self.md(who), timeout=timeout)

    def upload(self, who, data, **kw):
        return self.upload_call(self.chunks(data, **kw), who)

    def refused(self, messages, who, code, reason):
        """The upload is refused with code and reason, and leaves no temp file."""
        with self.assertRaises(grpc.RpcError) as cm:
            self.upload_call(messages, who)
        self.assertRpcError(cm.exception, code, reason)
        self.assertTrue(t.wait_until(lambda: not self.tmp_files(), timeout=5),
                        "temp files left: %s" % self.tmp_files())
        return cm.exception

    def unary(self, method, req, who):
        M = mat_pb()
        cls = {"ListWallet": M.ListWalletResponse, "GetMaterial": M.Material,
               "DeleteMaterial": M.DeleteMaterialResponse}[method]
        return self.srv.unary(SVC + method, type(req), cls)(req, metadata=self.md(who),
                                                            timeout=20)

    def list(self, who, **kw):
        return self.unary("ListWallet", mat_pb().ListWalletRequest(**kw), who)

    def get(self, who, mid):
        return self.unary("GetMaterial", mat_pb().GetMaterialRequest(material_id=mid), who)

    def delete(self, who, mid):
        return self.unary("DeleteMaterial", mat_pb().DeleteMaterialRequest(material_id=mid), who)

    def fails(self, fn, code, reason):
        with self.assertRaises(grpc.RpcError) as cm:
            fn()
        self.assertRpcError(cm.exception, code, reason)

    def all_ids(self, who, **kw):
        out, token = [], ""
        while True:
            resp = self.list(who, page_token=token, **kw)
            out += [m.material_id for m in resp.materials]
            if not resp.next_page_token:
                return out
            token = resp.next_page_token

    def issue(self, phone, number=NUMBER, extra=(), env=None):
        e = {"FXB_DATA_DIR": self.data_dir}
        e.update(env or {})
        return t.run_admin(["licence", "issue", "--phone", phone, "--type", "household_register",
                            "--name", "居民户口簿", "--number", number, "--issuer", "新乡市公安局"]
                           + list(extra), redis_url=self.srv.redis_url, env=e)

    def delegated(self, agent, principal, scope):
        """Call metadata of agent acting for principal (an account or an
        enterprise id) under an active grant holding scope."""
        gid = "g" + secrets.token_hex(12)
        now = int(time.time() * 1000)
        t.redis_cmd(self.srv.redis_url, "HSET", "{g:%s}:grant" % gid, "principal", principal,
                    "principal_kind", "enterprise" if principal.startswith("e") and
                    len(principal) == 25 else "person", "agent", agent.account_id,
                    "scope", scope, "status", "active", "initiated_by", "principal",
                    "valid_from_ms", now - 60000, "valid_until_ms", now + 3600000,
                    "notify_activity", "0")
        claims = t.jwt_decode(agent.access)[1]
        token = t.forge_token(self.srv, base=claims, sub=principal, act={"sub": agent.account_id},
                              grant_id=gid, scope=scope, jti=uuid.uuid4().hex)
        return t.bearer(token)

    def held_upload(self, who, first_messages):
        """Starts an upload that sends first_messages and then waits (the
        client never finishes on its own). Returns (future, release)."""
        release = threading.Event()

        def gen():
            for m in first_messages:
                yield m
            release.wait(30)

        M = mat_pb()
        fn = self.srv.stream_unary(SVC + "UploadMaterial", M.UploadChunk, M.Material)
        return fn.future(gen(), metadata=self.md(who), timeout=60), release

    # --- uploads -------------------------------------------------------------
    def test_pdf_jpeg_and_png_uploads_are_listed_with_their_size_and_sha256(self):
        who = t.sign_in(self.srv)
        made = []
        for data, name, ctype in ((PDF, "营业执照.pdf", "application/pdf"),
                                  (JPEG, "身份证正面.jpg", "image/jpeg"),
                                  (PNG, "户口本.png", "image/png")):
            m = self.upload(who, data, name=name, material_code="M-001")
            self.assertEqual((m.kind, m.file_name, m.content_type, m.size, m.sha256,
                              m.material_code),
                             (mat_pb().MATERIAL_KIND_UPLOAD, name, ctype, len(data), sha(data),
                              "M-001"))
            self.assertTrue(m.material_id)
            self.assertGreater(m.created_at_ms, 0)
            with open(self.blob_path(sha(data)), "rb") as f:
                self.assertEqual(f.read(), data)
            made.append(m)
        listed = self.list(who).materials
        self.assertEqual([m.material_id for m in listed], [m.material_id for m in made[::-1]])
        for got, want in zip(listed, made[::-1]):
            self.assertEqual(got, want)
        self.assertEqual(self.get(who, made[0].material_id), made[0])
        self.assertEqual(self.tmp_files(), [])

    def test_the_content_type_is_judged_by_the_leading_bytes_not_the_name(self):
        who = t.sign_in(self.srv)
        m = self.upload(who, PNG, name="看起来像.pdf")
        self.assertEqual(m.content_type, "image/png")
        for data in (b"GIF89a" + b"\x00" * 100, b"PK\x03\x04zip", b"%PDX-1.7", b"\xff\xd8\x00",
                     b"<html>%PDF-</html>", b"\x89PNG\r\n\x1a\x00"):
            self.refused(self.chunks(data, name="x.pdf"), who, INVALID,
                         "CONTENT_TYPE_NOT_ALLOWED")
        # shorter than the signature it begins
        self.refused(self.chunks(b"%PD"), who, INVALID, "CONTENT_TYPE_NOT_ALLOWED")

    def test_the_signature_may_span_chunks(self):
        who = t.sign_in(self.srv)
        m = self.upload(who, PNG, chunk=3)
        self.assertEqual((m.content_type, m.size, m.sha256), ("image/png", len(PNG), sha(PNG)))

    def test_a_bad_type_is_refused_at_the_first_chunk(self):
        who = t.sign_in(self.srv)
        M = mat_pb()
        fut, release = self.held_upload(who, [
            M.UploadChunk(header=M.UploadHeader(file_name="a.pdf")),
            M.UploadChunk(data=b"MZ\x90\x00" + b"\x00" * 1000)])
        try:
            err = fut.exception(timeout=10)
            self.assertIsNotNone(err, "the upload was not refused before it ended")
            self.assertRpcError(err, INVALID, "CONTENT_TYPE_NOT_ALLOWED")
        finally:
            release.set()
        self.assertTrue(t.wait_until(lambda: not self.tmp_files(), timeout=5))

    def test_the_first_message_must_be_the_header(self):
        who = t.sign_in(self.srv)
        self.refused(self.chunks(PDF, header=False), who, INVALID, "UPLOAD_HEADER_REQUIRED")
        self.refused(iter([]), who, INVALID, "UPLOAD_HEADER_REQUIRED")
        self.refused(iter([mat_pb().UploadChunk()]), who, INVALID, "UPLOAD_HEADER_REQUIRED")

    def test_the_header_comes_once(self):
        who = t.sign_in(self.srv)
        M = mat_pb()
        hdr = M.UploadChunk(header=M.UploadHeader(file_name="a.pdf"))
        self.refused(iter([hdr, hdr]), who, INVALID, "UPLOAD_HEADER_REPEATED")
        self.refused(iter([hdr, M.UploadChunk(data=PDF), hdr]), who, INVALID,
                     "UPLOAD_HEADER_REPEATED")

    def test_file_names_are_1_to_100_characters_without_separators_or_controls(self):
        who = t.sign_in(self.srv)
        for bad in ("", "a" * 101, "证" * 101, "dir/a.pdf", "dir\\a.pdf", "a\nb.pdf",
                    "a\x7fb.pdf", "a\u0085b.pdf", "invoice\u202efdp.exe",
                    "a\u2028b.pdf"):
            with self.subTest(name=bad):
                self.refused(self.chunks(PDF, name=bad), who, INVALID, "FILE_NAME_INVALID")
        for good in ("a", "证" * 100, "a" * 100, "张三 身份证(正面).jpg", ".hidden", ".."):
            with self.subTest(name=good):
                self.assertEqual(self.upload(who, JPEG, name=good).file_name, good)

    def test_a_malformed_material_code_or_sha256_is_refused(self):
        who = t.sign_in(self.srv)
        for hdr in ({"material_code": "a" * 17}, {"material_code": "a b"},
                    {"material_code": "代码"}, {"sha256": sha(PDF).upper()},
                    {"sha256": sha(PDF)[:63]}, {"sha256": "g" * 64}):
            with self.subTest(**hdr):
                self.refused(self.chunks(PDF, **hdr), who, INVALID, "UPLOAD_HEADER_INVALID")
        m = self.upload(who, PDF, material_code="Ab_-09" + "x" * 10)
        self.assertEqual(m.material_code, "Ab_-09" + "x" * 10)

    def test_uploads_larger_than_the_limit_are_refused(self):
        who = t.sign_in(self.srv)
        exact = b"%PDF-" + b"x" * (SMALL_MAX - 5)
        self.assertEqual(self.upload(who, exact, chunk=10000).size, SMALL_MAX)
        self.refused(self.chunks(exact + b"y", chunk=10000), who, EXHAUSTED, "UPLOAD_TOO_LARGE")
        self.refused(self.chunks(exact + b"y"), who, EXHAUSTED, "UPLOAD_TOO_LARGE")
        # announced too large: refused at the header
        self.refused(self.chunks(PDF, size=SMALL_MAX + 1), who, EXHAUSTED, "UPLOAD_TOO_LARGE")

    def test_an_upload_is_refused_as_soon_as_it_passes_the_limit(self):
        who = t.sign_in(self.srv)
        M = mat_pb()
        first = [M.UploadChunk(header=M.UploadHeader(file_name="big.pdf")),
                 M.UploadChunk(data=b"%PDF-" + b"x" * (SMALL_MAX - 5)),
                 M.UploadChunk(data=b"x")]
        fut, release = self.held_upload(who, first)
        try:
            err = fut.exception(timeout=10)
            self.assertIsNotNone(err, "the upload was not refused before it ended")
            self.assertRpcError(err, EXHAUSTED, "UPLOAD_TOO_LARGE")
        finally:
            release.set()
        self.assertTrue(t.wait_until(lambda: not self.tmp_files(), timeout=5))

    def test_chunks_hold_at_most_262144_bytes(self):
        who = t.sign_in(self.srv)
        M = mat_pb()
        big = M.UploadChunk(data=b"%PDF-" + b"x" * CHUNK)
        self.refused(iter([M.UploadChunk(header=M.UploadHeader(file_name="a.pdf")), big]), who,
                     EXHAUSTED, "MESSAGE_TOO_LARGE")

    def test_an_empty_upload_is_refused(self):
        who = t.sign_in(self.srv)
        self.refused(self.chunks(b""), who, INVALID, "UPLOAD_EMPTY")
        M = mat_pb()
        self.refused(iter([M.UploadChunk(header=M.UploadHeader(file_name="a.pdf")),
                           M.UploadChunk(data=b"")]), who, INVALID, "UPLOAD_EMPTY")

    def test_an_announced_size_must_match(self):
        who = t.sign_in(self.srv)
        self.refused(self.chunks(PDF, size=len(PDF) + 1), who, INVALID, "UPLOAD_SIZE_MISMATCH")
        self.refused(self.chunks(PDF, size=len(PDF) - 1), who, INVALID, "UPLOAD_SIZE_MISMATCH")
        self.assertEqual(self.upload(who, PDF, size=len(PDF)).size, len(PDF))

    def test_an_announced_sha256_must_match(self):
        who = t.sign_in(self.srv)
        self.refused(self.chunks(PDF, sha256=sha(PDF + b"x")), who, INVALID,
                     "UPLOAD_DIGEST_MISMATCH")
        self.assertFalse(os.path.exists(self.blob_path(sha(PDF + b"x"))))
        other = PDF + b"% unique " + secrets.token_bytes(8)
        self.refused(self.chunks(other, sha256=sha(PDF)), who, INVALID,
                     "UPLOAD_DIGEST_MISMATCH")
        self.assertFalse(os.path.exists(self.blob_path(sha(other))))
        self.assertEqual(self.upload(who, other, sha256=sha(other)).sha256, sha(other))

    def test_a_refused_upload_adds_nothing_to_the_wallet(self):
        who = t.sign_in(self.srv)
        unique = PDF + secrets.token_bytes(16)
        self.refused(self.chunks(unique, size=1), who, INVALID, "UPLOAD_SIZE_MISMATCH")
        self.assertEqual(list(self.list(who).materials), [])
        self.assertFalse(os.path.exists(self.blob_path(sha(unique))))

    def test_a_cancelled_upload_leaves_no_temp_file(self):
        who = t.sign_in(self.srv)
        M = mat_pb()
        data = PDF + secrets.token_bytes(16)
        fut, release = self.held_upload(who, [
            M.UploadChunk(header=M.UploadHeader(file_name="a.pdf")),
            M.UploadChunk(data=data)])
        try:
            self.assertTrue(t.wait_until(lambda: len(self.tmp_files()) == 1, timeout=10),
                            "the upload never started writing")
            fut.cancel()
        finally:
            release.set()
        self.assertTrue(t.wait_until(lambda: not self.tmp_files(), timeout=10),
                        "temp files left: %s" % self.tmp_files())
        # the core may also end the cancelled stream as if it were complete:
        # whatever was stored then is taken back
        self.assertTrue(t.wait_until(lambda: not self.list(who).materials, timeout=10))
        self.assertFalse(os.path.exists(self.blob_path(sha(data))))

    def test_a_wallet_holds_at_most_200_materials(self):
        who = t.sign_in(self.srv)
        key = "{u:%s}:wallet" % who.account_id
        t.redis_cmds(self.srv.redis_url, [["ZADD", key, i, "filler%03d" % i]
                                          for i in range(WALLET_MAX - 1)])
        self.upload(who, PDF)
        self.refused(self.chunks(PDF), who, EXHAUSTED, "WALLET_FULL")
        self.assertEqual(t.redis_cmd(self.srv.redis_url, "ZCARD", key), WALLET_MAX)

    def test_the_same_file_twice_is_two_entries_sharing_one_blob(self):
        who = t.sign_in(self.srv)
        data = JPEG + secrets.token_bytes(8)
        a = self.upload(who, data, name="a.jpg")
        b = self.upload(who, data, name="b.jpg")
        self.assertNotEqual(a.material_id, b.material_id)
        self.assertEqual(a.sha256, b.sha256)
        self.assertEqual(len(self.list(who).materials), 2)
        self.assertTrue(os.path.exists(self.blob_path(a.sha256)))

    def test_blob_file_names_carry_no_personal_data(self):
        who = t.sign_in(self.srv)
        self.upload(who, PDF + b"unique" + secrets.token_bytes(4), name="张三身份证.pdf")
        for root, dirs, files in os.walk(os.path.join(self.data_dir, "blobs")):
            for n in dirs + files:
                self.assertRegex(n, r"^(tmp|sha256|[0-9a-f]{2}|[0-9a-f]{64})$")

    # --- the wallet -----------------------------------------------------------
    def test_the_wallet_pages_newest_first_and_filters_by_kind(self):
        who = t.sign_in(self.srv)
        ids = [self.upload(who, PDF, name="%d.pdf" % i).material_id for i in range(5)]
        r = self.issue(who.phone)
        self.assertEqual(r.returncode, 0, r.stderr)
        lic = r.stdout.strip().rsplit(": ", 1)[1]
        p1 = self.list(who, page_size=2)
        self.assertEqual([m.material_id for m in p1.materials], [lic, ids[4]])
        self.assertTrue(p1.next_page_token)
        self.assertEqual(self.all_ids(who, page_size=2), [lic] + ids[::-1])
        self.assertEqual(self.all_ids(who, page_size=100), [lic] + ids[::-1])
        self.assertEqual(self.all_ids(who, page_size=1, kind=mat_pb().MATERIAL_KIND_UPLOAD),
                         ids[::-1])
        self.assertEqual(self.all_ids(who, kind=mat_pb().MATERIAL_KIND_LICENCE), [lic])
        last = self.list(who, page_size=6)
        self.assertEqual((len(last.materials), last.next_page_token), (6, ""))
        self.assertEqual(len(self.list(who).materials), 6)

    def test_page_size_is_1_to_100_and_the_token_is_the_servers(self):
        who = t.sign_in(self.srv)
        for bad in (101, 2 ** 32 - 1):
            self.fails(lambda: self.list(who, page_size=bad), INVALID, "PAGE_SIZE_INVALID")
        for bad in ("x", "zz", "00", "3a", "31323a", "3132" * 60):
            self.fails(lambda: self.list(who, page_token=bad), INVALID, "PAGE_TOKEN_INVALID")
        self.fails(lambda: self.list(who, kind=7), INVALID, "KIND_INVALID")

    def test_get_material_needs_a_valid_id_of_my_wallet(self):
        who = t.sign_in(self.srv)
        for bad in ("", "a b", "x" * 65, "{u:1}"):
            self.fails(lambda: self.get(who, bad), INVALID, "MATERIAL_ID_INVALID")
            self.fails(lambda: self.delete(who, bad), INVALID, "MATERIAL_ID_INVALID")
        self.fails(lambda: self.get(who, "AAAAAAAAAAAAAAAAAAAAAA"), NOT_FOUND,
                   "MATERIAL_NOT_FOUND")
        self.fails(lambda: self.delete(who, "AAAAAAAAAAAAAAAAAAAAAA"), NOT_FOUND,
                   "MATERIAL_NOT_FOUND")

    def test_another_person_cannot_get_or_delete_my_material(self):
        me, other = t.sign_in(self.srv), t.sign_in(self.srv)
        m = self.upload(me, PDF)
        self.fails(lambda: self.get(other, m.material_id), NOT_FOUND, "MATERIAL_NOT_FOUND")
        self.fails(lambda: self.delete(other, m.material_id), NOT_FOUND, "MATERIAL_NOT_FOUND")
        self.assertEqual(list(self.list(other).materials), [])
        self.assertEqual(self.get(me, m.material_id).material_id, m.material_id)

    def test_delete_removes_the_entry_and_keeps_the_shared_blob(self):
        who = t.sign_in(self.srv)
        data = PNG + secrets.token_bytes(8)
        a = self.upload(who, data)
        b = self.upload(who, data)
        self.delete(who, a.material_id)
        self.assertEqual([m.material_id for m in self.list(who).materials], [b.material_id])
        self.fails(lambda: self.get(who, a.material_id), NOT_FOUND, "MATERIAL_NOT_FOUND")
        self.fails(lambda: self.delete(who, a.material_id), NOT_FOUND, "MATERIAL_NOT_FOUND")
        self.assertTrue(os.path.exists(self.blob_path(a.sha256)))
        self.delete(who, b.material_id)
        self.assertEqual(list(self.list(who).materials), [])
        self.assertTrue(os.path.exists(self.blob_path(a.sha256)))

    def test_a_material_in_use_cannot_be_deleted(self):
        who = t.sign_in(self.srv)
        m = self.upload(who, PDF)
        key = "{u:%s}:material:%s" % (who.account_id, m.material_id)
        t.redis_cmd(self.srv.redis_url, "HINCRBY", key, "in_use", 1)
        self.fails(lambda: self.delete(who, m.material_id), PRECONDITION, "MATERIAL_IN_USE")
        t.redis_cmd(self.srv.redis_url, "HINCRBY", key, "in_use", -1)
        self.delete(who, m.material_id)
        self.assertEqual(list(self.list(who).materials), [])

    # --- licences -------------------------------------------------------------
    def test_an_issued_licence_is_listed_masked_and_its_number_is_nowhere_in_redis(self):
        who = t.sign_in(self.srv)
        r = self.issue(who.phone, extra=["--valid-until", "20301231"])
        self.assertEqual(r.returncode, 0, r.stderr)
        masked_phone = who.phone[:3] + "****" + who.phone[-4:]
        self.assertRegex(r.stdout.strip(),
                         r"^licence household_register issued to %s: [A-Za-z0-9_-]{22}$" %
                         masked_phone.replace("*", r"\*"))
        for out in (r.stdout, r.stderr):
            self.assertNotIn(who.phone, out)
            self.assertNotIn(NUMBER, out)
        mid = r.stdout.strip().rsplit(": ", 1)[1]
        [m] = self.list(who, kind=mat_pb().MATERIAL_KIND_LICENCE).materials
        self.assertEqual((m.material_id, m.kind, m.licence_type, m.licence_name,
                          m.licence_number_masked, m.issuer, m.file_name, m.size),
                         (mid, mat_pb().MATERIAL_KIND_LICENCE, "household_register", "居民户口簿",
                          "41************2345", "新乡市公安局", "", 0))
        # 2030-12-31 23:59:59.999 China time
        self.assertEqual(m.valid_until_ms, 1924963199999)
        self.assertEqual(self.get(who, mid), m)
        for key, values in t.redis_dump(self.srv.redis_url):
            self.assertNotIn(NUMBER.encode(), key)
            for v in values:
                self.assertNotIn(NUMBER.encode(), v, key)
        self.fails(lambda: self.delete(who, mid), PRECONDITION, "LICENCE_NOT_REMOVABLE")

    def test_licence_issue_is_refused_in_production_and_for_unknown_phones(self):
        who = t.sign_in(self.srv)
        r = self.issue(who.phone, env={"FXB_ENV": "production"})
        self.assertEqual(r.returncode, 2)
        self.assertIn("production", r.stderr)
        r = self.issue(t.random_phone("135"))
        self.assertEqual(r.returncode, 1)
        self.assertIn("no account", r.stderr)
        r = self.issue(who.phone, extra=["--valid-until", "20301332"])
        self.assertEqual(r.returncode, 2)
        r = t.run_admin(["licence", "issue", "--phone", who.phone], redis_url=self.srv.redis_url,
                        env={"FXB_DATA_DIR": self.data_dir})
        self.assertEqual(r.returncode, 2)
        self.assertEqual(list(self.list(who).materials), [])

    # --- delegation -------------------------------------------------------------
    def test_an_agent_with_filing_read_lists_the_principals_wallet(self):
        principal, agent = t.sign_in(self.srv), t.sign_in(self.srv)
        m = self.upload(principal, PDF)
        md = self.delegated(agent, principal.account_id, "filing.read")
        self.assertEqual([x.material_id for x in self.list(md).materials], [m.material_id])
        self.assertEqual(self.get(md, m.material_id).material_id, m.material_id)
        # reading is not submitting
        self.fails(lambda: self.delete(md, m.material_id), DENIED, "OUT_OF_SCOPE")
        self.fails(lambda: self.upload(md, PDF), DENIED, "OUT_OF_SCOPE")
        self.assertEqual(list(self.list(agent).materials), [])

    def test_a_grant_without_filing_read_is_out_of_scope(self):
        principal, agent = t.sign_in(self.srv), t.sign_in(self.srv)
        md = self.delegated(agent, principal.account_id, "inbox.read")
        self.fails(lambda: self.list(md), DENIED, "OUT_OF_SCOPE")
        self.fails(lambda: self.get(md, "AAAAAAAAAAAAAAAAAAAAAA"), DENIED, "OUT_OF_SCOPE")

    def test_an_agent_with_filing_submit_uploads_into_the_principals_wallet(self):
        principal, agent = t.sign_in(self.srv), t.sign_in(self.srv)
        md = self.delegated(agent, principal.account_id, "filing.submit")
        m = self.upload(md, JPEG)
        self.assertEqual([x.material_id for x in self.list(principal).materials], [m.material_id])
        self.fails(lambda: self.list(md), DENIED, "OUT_OF_SCOPE")
        self.delete(md, m.material_id)
        self.assertEqual(list(self.list(principal).materials), [])

    def test_an_enterprise_wallet_is_kept_under_the_enterprise(self):
        agent = t.sign_in(self.srv)
        eid = new_eid()
        md = self.delegated(agent, eid, "filing.submit filing.read")
        m = self.upload(md, PDF)
        self.assertEqual([x.material_id for x in self.list(md).materials], [m.material_id])
        self.assertEqual(t.redis_cmd(self.srv.redis_url, "ZCARD", "{e:%s}:wallet" % eid), 1)
        self.assertEqual(list(self.list(agent).materials), [])


class DefaultLimitTest(t.TestCase):
    def test_the_default_limit_accepts_exactly_10_mib_and_refuses_one_byte_more(self):
        with t.Server(extra_env=t.AUTH_ENV) as srv:
            who = t.sign_in(srv)
            M = mat_pb()
            fn = srv.stream_unary(SVC + "UploadMaterial", M.UploadChunk, M.Material)
            body = b"%PDF-" + b"\x00" * (DEFAULT_MAX - 5)

            def gen(data):
                yield M.UploadChunk(header=M.UploadHeader(file_name="ten.pdf"))
                for i in range(0, len(data), CHUNK):
                    yield M.UploadChunk(data=data[i:i + CHUNK])

            m = fn(gen(body), metadata=who.md(), timeout=120)
            self.assertEqual((m.size, m.sha256), (DEFAULT_MAX, sha(body)))
            with self.assertRaises(grpc.RpcError) as cm:
                fn(gen(body + b"\x00"), metadata=who.md(), timeout=120)
            self.assertRpcError(cm.exception, EXHAUSTED, "UPLOAD_TOO_LARGE")
            tmp = os.path.join(srv.env["FXB_DATA_DIR"], "blobs", "tmp")
            self.assertTrue(t.wait_until(lambda: not os.listdir(tmp), timeout=5))


if __name__ == "__main__":
    t.main()
