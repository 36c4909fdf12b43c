"""fxb.v1.InboxService end to end: every subject (a person, or an
enterprise) has a durable inbox of notices, newest first, paginated, with
one read mark that only moves forward.

Messages are written straight into the subject's stream with XADD in the
field format of store/inbox.h (kind, title, body, ref, at_ms), as the
services that send notices do. Enterprise bindings are written as
EnterpriseService records them ({e:<eid>}:enterprise rep_account): which
person may bind which enterprise is test_enterprise.py's business; proxy
grants are written as ProxyService records them ({g:<gid>}:grant) and the
agent's delegated token is signed with the server's key, as ExchangeToken
issues it: how grants are made is test_proxy.py's business. Every test
uses fresh accounts and enterprise ids: the shared Redis keeps inboxes
between tests and runs."""
import secrets
import time
import uuid

import grpc

import fxbtest as t

SVC = "/fxb.v1.InboxService/"
INVALID = grpc.StatusCode.INVALID_ARGUMENT
DENIED = grpc.StatusCode.PERMISSION_DENIED
UNAUTH = grpc.StatusCode.UNAUTHENTICATED

MAX_ID = "18446744073709551615-18446744073709551615"
INBOX_MAX = 1000


def inbox_pb():
    return t.pb("fxb/v1/inbox")


def new_eid():
    return "e" + secrets.token_hex(12)


def key_of(subject):
    tag = "e" if len(subject) == 25 and subject[0] == "e" else "u"
    return "{%s:%s}:inbox" % (tag, subject)


def id_key(mid):
    ms, seq = mid.split("-")
    return int(ms), int(seq)


class InboxTest(t.TestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.srv = t.Server(extra_env=t.AUTH_ENV).__enter__()

    @classmethod
    def tearDownClass(cls):
        cls.srv.__exit__(None, None, None)

    # --- helpers -------------------------------------------------------------
    def put(self, subject, n=1, kind="proxy.offered", start=0, id_="*"):
        """XADDs n messages (title "消息<i>", i from start); returns their ids,
        oldest first."""
        cmds = [["XADD", key_of(subject), id_, "kind", kind, "title", "消息%d" % i,
                 "body", "正文%d" % i, "ref", "ref-%d" % i, "at_ms", 1700000000000 + i]
                for i in range(start, start + n)]
        return [r.decode() for r in t.redis_cmds(self.srv.redis_url, cmds)]

    def marker(self, subject):
        v = t.redis_cmd(self.srv.redis_url, "GET", key_of(subject) + ":read")
        return v.decode() if v is not None else None

    def call(self, method, req, who):
        cls = {"ListMessages": inbox_pb().ListMessagesResponse,
               "MarkRead": inbox_pb().MarkReadResponse}[method]
        md = who.md() if hasattr(who, "md") else who
        return self.srv.unary(SVC + method, type(req), cls)(req, metadata=md, timeout=20)

    def list(self, who, **kw):
        return self.call("ListMessages", inbox_pb().ListMessagesRequest(**kw), who)

    def mark(self, who, up_to_id, **kw):
        return self.call("MarkRead", inbox_pb().MarkReadRequest(up_to_id=up_to_id, **kw), who)

    def fails(self, fn, code, reason):
        with self.assertRaises(grpc.RpcError) as cm:
            fn()
        self.assertRpcError(cm.exception, code, reason)

    def all_ids(self, who, **kw):
        """Every message id, page by page, newest first."""
        out, before = [], ""
        while True:
            resp = self.list(who, before_id=before, **kw)
            out += [m.message_id for m in resp.messages]
            if not resp.next_before_id:
                return out
            before = resp.next_before_id

    def bind(self, who, eid):
        """who is eid's bound legal representative (as BindEnterprise writes)."""
        t.redis_cmd(self.srv.redis_url, "HSET", "{e:%s}:enterprise" % eid,
                    "name", "新乡市测试有限公司", "code", "91410700MA00000000",
                    "rep_account", who.account_id, "bound_at_ms", int(time.time() * 1000))

    def delegated(self, agent, principal, scope="inbox.read"):
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

    # --- listing ---------------------------------------------------------------
    def test_messages_are_listed_newest_first_with_every_field(self):
        who = t.sign_in(self.srv)
        ids = self.put(who.account_id, 3)
        resp = self.list(who)
        self.assertEqual([m.message_id for m in resp.messages], ids[::-1])
        m = resp.messages[0]
        self.assertEqual((m.kind, m.title, m.body, m.ref, m.at_ms, m.read),
                         ("proxy.offered", "消息2", "正文2", "ref-2", 1700000000002, False))
        self.assertEqual(resp.unread, 3)
        self.assertEqual(resp.next_before_id, "")

    def test_an_empty_inbox_lists_nothing(self):
        who = t.sign_in(self.srv)
        resp = self.list(who)
        self.assertEqual((list(resp.messages), resp.unread, resp.next_before_id), ([], 0, ""))
        self.assertEqual(list(self.list(who, unread_only=True).messages), [])

    def test_each_person_sees_only_their_own_inbox(self):
        a, b = t.sign_in(self.srv), t.sign_in(self.srv)
        self.put(a.account_id, 2)
        self.assertEqual(len(self.list(a).messages), 2)
        resp = self.list(b)
        self.assertEqual((list(resp.messages), resp.unread), ([], 0))

    def test_pages_follow_before_id_and_the_last_page_has_no_next(self):
        who = t.sign_in(self.srv)
        ids = self.put(who.account_id, 5)[::-1]
        p1 = self.list(who, page_size=2)
        self.assertEqual([m.message_id for m in p1.messages], ids[0:2])
        self.assertEqual(p1.next_before_id, ids[1])
        p2 = self.list(who, page_size=2, before_id=p1.next_before_id)
        self.assertEqual([m.message_id for m in p2.messages], ids[2:4])
        self.assertEqual(p2.next_before_id, ids[3])
        p3 = self.list(who, page_size=2, before_id=p2.next_before_id)
        self.assertEqual([m.message_id for m in p3.messages], ids[4:5])
        self.assertEqual(p3.next_before_id, "")
        for p in (p1, p2, p3):
            self.assertEqual(p.unread, 5)
        # a page that ends exactly at the oldest message is the last
        p = self.list(who, page_size=4, before_id=ids[0])
        self.assertEqual([m.message_id for m in p.messages], ids[1:5])
        self.assertEqual(p.next_before_id, "")

    def test_page_size_is_1_to_100_and_0_means_20(self):
        who = t.sign_in(self.srv)
        self.put(who.account_id, 120)
        self.assertEqual(len(self.list(who).messages), 20)
        self.assertEqual(len(self.list(who, page_size=1).messages), 1)
        self.assertEqual(len(self.list(who, page_size=100).messages), 100)
        self.assertEqual(len(self.all_ids(who)), 120)
        for bad in (101, 1000, 2 ** 32 - 1):
            self.fails(lambda: self.list(who, page_size=bad), INVALID, "PAGE_SIZE_INVALID")

    def test_before_id_is_exclusive_and_need_not_name_a_message(self):
        who = t.sign_in(self.srv)
        for mid in ("100-0", "100-5", "200-0"):
            self.put(who.account_id, id_=mid)

        def before(b):
            return [m.message_id for m in self.list(who, before_id=b).messages]

        self.assertEqual(before("100-5"), ["100-0"])
        self.assertEqual(before("100-3"), ["100-0"])
        self.assertEqual(before("150-0"), ["100-5", "100-0"])
        self.assertEqual(before("200-1"), ["200-0", "100-5", "100-0"])
        self.assertEqual(before(MAX_ID), ["200-0", "100-5", "100-0"])
        for nothing_before in ("0-0", "0-1", "100-0"):
            resp = self.list(who, before_id=nothing_before)
            self.assertEqual((list(resp.messages), resp.next_before_id, resp.unread),
                             ([], "", 3))

    # --- read state --------------------------------------------------------------
    def test_mark_read_marks_everything_up_to_and_including_the_id(self):
        who = t.sign_in(self.srv)
        ids = self.put(who.account_id, 4)
        self.assertEqual(self.mark(who, ids[1]).unread, 2)
        resp = self.list(who)
        self.assertEqual([(m.message_id, m.read) for m in resp.messages],
                         [(ids[3], False), (ids[2], False), (ids[1], True), (ids[0], True)])
        self.assertEqual(resp.unread, 2)
        self.assertEqual(self.marker(who.account_id), ids[1])

    def test_unread_only_lists_only_messages_after_the_mark(self):
        who = t.sign_in(self.srv)
        ids = self.put(who.account_id, 5)
        self.mark(who, ids[2])
        resp = self.list(who, unread_only=True)
        self.assertEqual([m.message_id for m in resp.messages], [ids[4], ids[3]])
        self.assertTrue(all(not m.read for m in resp.messages))
        self.assertEqual((resp.unread, resp.next_before_id), (2, ""))
        # paged: one at a time, and no next page once the unread ones are out
        p1 = self.list(who, unread_only=True, page_size=1)
        self.assertEqual(([m.message_id for m in p1.messages], p1.next_before_id),
                         ([ids[4]], ids[4]))
        p2 = self.list(who, unread_only=True, page_size=1, before_id=p1.next_before_id)
        self.assertEqual(([m.message_id for m in p2.messages], p2.next_before_id), ([ids[3]], ""))
        self.assertEqual(list(self.list(who, unread_only=True, before_id=ids[3]).messages), [])
        self.mark(who, ids[4])
        self.assertEqual(list(self.list(who, unread_only=True).messages), [])

    def test_unread_counts_messages_after_the_mark_not_the_stream_length(self):
        who = t.sign_in(self.srv)
        ids = self.put(who.account_id, 10)
        self.mark(who, ids[6])
        self.assertEqual(self.list(who).unread, 3)
        self.put(who.account_id, 2, start=10)
        self.assertEqual(self.list(who).unread, 5)
        self.assertEqual(self.mark(who, ids[9]).unread, 2)

    def test_unread_is_at_most_the_inbox_size(self):
        who = t.sign_in(self.srv)
        ids = self.put(who.account_id, INBOX_MAX + 50)
        self.assertEqual(self.list(who).unread, INBOX_MAX)
        self.assertEqual(self.mark(who, ids[40]).unread, INBOX_MAX)
        self.assertEqual(self.mark(who, ids[100]).unread, INBOX_MAX + 50 - 101)
        self.assertEqual(self.mark(who, ids[-1]).unread, 0)

    def test_the_read_mark_only_moves_forward(self):
        who = t.sign_in(self.srv)
        ids = self.put(who.account_id, 4)
        self.assertEqual(self.mark(who, ids[2]).unread, 1)
        self.assertEqual(self.mark(who, ids[0]).unread, 1)
        self.assertEqual(self.mark(who, "0-1").unread, 1)
        self.assertEqual(self.marker(who.account_id), ids[2])
        self.assertEqual([m.read for m in self.list(who).messages], [False, True, True, True])

    def test_ids_compare_as_numbers_not_as_text(self):
        who = t.sign_in(self.srv)
        for mid in ("9-1", "10-1", "10-3"):
            self.put(who.account_id, id_=mid)
        self.assertEqual([m.message_id for m in self.list(who).messages], ["10-3", "10-1", "9-1"])
        self.assertEqual(self.mark(who, "9-5").unread, 2)
        self.assertEqual(self.mark(who, "10-2").unread, 1)  # "10-2" < "9-5" as text
        self.assertEqual(self.mark(who, "9-9").unread, 1)   # "9-9" > "10-2" as text
        self.assertEqual(self.marker(who.account_id), "10-2")
        self.assertEqual([m.read for m in self.list(who).messages], [False, True, True])
        self.assertEqual([m.message_id for m in self.list(who, before_id="10-2").messages],
                         ["10-1", "9-1"])

    def test_a_mark_past_the_newest_message_stops_at_the_newest(self):
        who = t.sign_in(self.srv)
        ids = self.put(who.account_id, 2)
        future = "%d-0" % (int(time.time() * 1000) + 10 ** 9)
        self.assertEqual(self.mark(who, future).unread, 0)
        self.assertEqual(self.marker(who.account_id), ids[1])
        self.assertEqual(self.mark(who, MAX_ID).unread, 0)
        self.assertEqual(self.marker(who.account_id), ids[1])
        # a message that arrives later is unread, though its id is below `future`
        [new] = self.put(who.account_id, 1, start=2)
        self.assertLess(id_key(new), id_key(future))
        resp = self.list(who)
        self.assertEqual((resp.unread, resp.messages[0].message_id, resp.messages[0].read),
                         (1, new, False))

    def test_marking_an_empty_inbox_changes_nothing(self):
        who = t.sign_in(self.srv)
        self.assertEqual(self.mark(who, "1700000000000-0").unread, 0)
        self.assertIsNone(self.marker(who.account_id))
        [mid] = self.put(who.account_id, 1)
        self.assertEqual(self.list(who).unread, 1)
        self.assertEqual(self.mark(who, mid).unread, 0)

    # --- bad input ------------------------------------------------------------------
    def test_a_message_id_must_be_ms_dash_seq_in_canonical_decimals(self):
        who = t.sign_in(self.srv)
        ids = self.put(who.account_id, 1)
        bad = ["abc", "1", "1-", "-1", "-", "+", "(1-1", "1-1-1", " 1-1", "1-1 ", "01-1", "1-01",
               "1.5-0", "1-0x1", "+1-1", "１-１", "18446744073709551616-0",
               "0-18446744073709551616", "1" * 21 + "-0"]
        for b in bad:
            with self.subTest(id=b):
                self.fails(lambda: self.list(who, before_id=b), INVALID, "MESSAGE_ID_INVALID")
                self.fails(lambda: self.mark(who, b), INVALID, "MESSAGE_ID_INVALID")
        self.fails(lambda: self.mark(who, ""), INVALID, "MESSAGE_ID_INVALID")
        self.assertIsNone(self.marker(who.account_id))
        # the extremes are well-formed
        self.assertEqual(len(self.list(who, before_id=MAX_ID).messages), 1)
        self.assertEqual(self.mark(who, "0-0").unread, 1)

    # --- enterprises -------------------------------------------------------------------
    def test_the_bound_legal_representative_reads_the_enterprise_inbox(self):
        who, eid = t.sign_in(self.srv), new_eid()
        self.bind(who, eid)
        ids = self.put(eid, 3, kind="benefit.granted")
        self.put(who.account_id, 1)
        resp = self.list(who, enterprise_id=eid)
        self.assertEqual([m.message_id for m in resp.messages], ids[::-1])
        self.assertEqual(resp.messages[0].kind, "benefit.granted")
        self.assertEqual(self.mark(who, ids[0], enterprise_id=eid).unread, 2)
        self.assertEqual(self.marker(eid), ids[0])
        # the person's own inbox is apart
        self.assertEqual(self.list(who).unread, 1)
        self.assertIsNone(self.marker(who.account_id))

    def test_another_persons_enterprise_is_not_legal_representative(self):
        owner, other, eid = t.sign_in(self.srv), t.sign_in(self.srv), new_eid()
        self.bind(owner, eid)
        [mid] = self.put(eid, 1)
        self.fails(lambda: self.list(other, enterprise_id=eid), DENIED,
                   "NOT_LEGAL_REPRESENTATIVE")
        self.fails(lambda: self.mark(other, mid, enterprise_id=eid), DENIED,
                   "NOT_LEGAL_REPRESENTATIVE")
        self.assertIsNone(self.marker(eid))

    def test_an_unbound_or_unknown_enterprise_is_not_legal_representative(self):
        who, eid = t.sign_in(self.srv), new_eid()
        self.fails(lambda: self.list(who, enterprise_id=eid), DENIED, "NOT_LEGAL_REPRESENTATIVE")
        self.bind(who, eid)
        self.assertEqual(len(self.list(who, enterprise_id=eid).messages), 0)
        # UnbindEnterprise clears rep_account
        t.redis_cmd(self.srv.redis_url, "HSET", "{e:%s}:enterprise" % eid, "rep_account", "")
        self.fails(lambda: self.list(who, enterprise_id=eid), DENIED, "NOT_LEGAL_REPRESENTATIVE")
        self.fails(lambda: self.mark(who, "1-1", enterprise_id=eid), DENIED,
                   "NOT_LEGAL_REPRESENTATIVE")

    def test_an_enterprise_id_must_be_e_and_24_lower_case_hex(self):
        who, eid = t.sign_in(self.srv), new_eid()
        self.bind(who, eid)
        bad = [eid.upper(), "E" + eid[1:], eid[:-1], eid + "0", "u" + eid[1:], "e" + "g" * 24,
               "../" + eid, "{e:%s}" % eid, who.account_id, " " + eid]
        for b in bad:
            with self.subTest(enterprise_id=b):
                self.fails(lambda: self.list(who, enterprise_id=b), INVALID,
                           "ENTERPRISE_ID_INVALID")
                self.fails(lambda: self.mark(who, "1-1", enterprise_id=b), INVALID,
                           "ENTERPRISE_ID_INVALID")

    # --- proxies ---------------------------------------------------------------------------
    def test_an_agent_with_inbox_read_reads_and_marks_the_principals_inbox(self):
        principal, agent = t.sign_in(self.srv), t.sign_in(self.srv)
        ids = self.put(principal.account_id, 3)
        self.put(agent.account_id, 1)
        md = self.delegated(agent, principal.account_id)
        resp = self.list(md)
        self.assertEqual(([m.message_id for m in resp.messages], resp.unread), (ids[::-1], 3))
        self.assertEqual(self.mark(md, ids[1]).unread, 1)
        self.assertEqual(self.marker(principal.account_id), ids[1])
        self.assertIsNone(self.marker(agent.account_id))

    def test_an_agent_for_an_enterprise_may_name_that_enterprise_and_no_other(self):
        agent, eid, other = t.sign_in(self.srv), new_eid(), new_eid()
        self.bind(agent, other)  # the agent's own standing does not travel with the grant
        ids = self.put(eid, 2)
        md = self.delegated(agent, eid)
        self.assertEqual([m.message_id for m in self.list(md).messages], ids[::-1])
        self.assertEqual([m.message_id for m in self.list(md, enterprise_id=eid).messages],
                         ids[::-1])
        self.assertEqual(self.mark(md, ids[0], enterprise_id=eid).unread, 1)
        self.fails(lambda: self.list(md, enterprise_id=other), DENIED, "OUT_OF_SCOPE")
        self.fails(lambda: self.mark(md, "1-1", enterprise_id=other), DENIED, "OUT_OF_SCOPE")
        self.assertIsNone(self.marker(other))

    def test_an_agent_for_a_person_may_not_name_an_enterprise(self):
        principal, agent, eid = t.sign_in(self.srv), t.sign_in(self.srv), new_eid()
        self.bind(principal, eid)
        md = self.delegated(agent, principal.account_id)
        self.fails(lambda: self.list(md, enterprise_id=eid), DENIED, "OUT_OF_SCOPE")

    def test_a_grant_without_inbox_read_is_out_of_scope(self):
        principal, agent = t.sign_in(self.srv), t.sign_in(self.srv)
        md = self.delegated(agent, principal.account_id, scope="benefits.read")
        self.fails(lambda: self.list(md), DENIED, "OUT_OF_SCOPE")
        self.fails(lambda: self.mark(md, "1-1"), DENIED, "OUT_OF_SCOPE")

    # --- access ---------------------------------------------------------------------------
    def test_an_unauthenticated_caller_is_refused(self):
        for md, reason in ((None, "TOKEN_MISSING"),
                           ([("authorization", "Bearer abc")], "TOKEN_MALFORMED")):
            self.fails(lambda: self.list(md), UNAUTH, reason)
            self.fails(lambda: self.mark(md, "1-1"), UNAUTH, reason)


if __name__ == "__main__":
    t.main()
