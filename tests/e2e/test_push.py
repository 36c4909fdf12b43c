"""fxb.v1.InboxService/Subscribe end to end: live push of inbox notices.

A subscription first replays every kept message after after_id (all of
them when empty), oldest first, then streams each new one as it arrives;
resuming with the last id received gives no gap and no duplicate; a notice
written through any fxb-server on the same Redis reaches subscribers on
every server; a reader that does not read costs the server a bounded
queue, never the whole backlog; shutdown ends streams with UNAVAILABLE.
Notices to subjects without a live subscription go to the vendor push
outbox (fxb:push:outbox), which in development the server moves to
fxb:dev:push (services/inbox/push.c documents the keys).

Notices come from real flows where one is cheap (a proxy grant offer is a
"proxy.offered" notice to the agent, an accepted enterprise grant a
"proxy.accepted" notice to the enterprise); bursts are written the way
fxb_inbox_append writes them: XADD to the subject's stream (MAXLEN ~ 1000)
then PUBLISH of the subject id on fxb:inbox:new (a batch publishes its
subjects together, separated by "\n"). Every test uses fresh
people: the shared Redis keeps inboxes between tests and runs."""
import os
import secrets
import signal
import threading
import time
import uuid

import grpc

import fxbtest as t
from people import People
from test_proxy import ProxyMixin

SVC = "/fxb.v1.InboxService/"
CHANNEL = "fxb:inbox:new"
OUTBOX = "fxb:push:outbox"
DEV_SINK = "fxb:dev:push"
ONLINE = "fxb:push:online:"
INBOX_MAX = 1000
PER_SUBJECT_MAX = 64

INVALID = grpc.StatusCode.INVALID_ARGUMENT
DENIED = grpc.StatusCode.PERMISSION_DENIED
UNAUTH = grpc.StatusCode.UNAUTHENTICATED
UNAVAILABLE = grpc.StatusCode.UNAVAILABLE
EXHAUSTED = grpc.StatusCode.RESOURCE_EXHAUSTED
CANCELLED = grpc.StatusCode.CANCELLED

ENV = dict(t.AUTH_ENV)


def inbox_pb():
    return t.pb("fxb/v1/inbox")


def key_of(subject):
    tag = "e" if len(subject) == 25 and subject[0] == "e" else "u"
    return "{%s:%s}:inbox" % (tag, subject)


def id_key(mid):
    ms, seq = mid.split("-")
    return int(ms), int(seq)


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS for %d" % pid)


class Reader:
    """One Subscribe call read by a thread: messages as they come, and how
    the stream ended (None while open, else the RpcError or "eof")."""

    def __init__(self, srv, md, after_id="", enterprise_id="", channel=None):
        i = inbox_pb()
        fn = srv.unary_stream(SVC + "Subscribe", i.SubscribeRequest, i.InboxMessage, channel)
        self.call = fn(i.SubscribeRequest(after_id=after_id, enterprise_id=enterprise_id),
                       metadata=md)
        self.messages = []
        self.end = None
        self.cv = threading.Condition()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        try:
            for m in self.call:
                with self.cv:
                    self.messages.append(m)
                    self.cv.notify_all()
            end = "eof"
        except grpc.RpcError as e:
            end = e
        with self.cv:
            self.end = end
            self.cv.notify_all()

    def wait(self, n, timeout=10):
        """The first n messages (fails if they do not come in time)."""
        deadline = time.monotonic() + timeout
        with self.cv:
            while len(self.messages) < n and self.end is None:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self.cv.wait(left)
            if len(self.messages) < n:
                raise AssertionError("%d of %d messages within %ss (end: %s)" %
                                     (len(self.messages), n, timeout, self.end))
            return list(self.messages[:n])

    def wait_id(self, mid, timeout=10):
        """Waits until message mid has come; returns everything so far."""
        deadline = time.monotonic() + timeout
        with self.cv:
            while not any(m.message_id == mid for m in self.messages):
                left = deadline - time.monotonic()
                if left <= 0 or self.end is not None:
                    raise AssertionError("message %s not received (got %d, end: %s)" %
                                         (mid, len(self.messages), self.end))
                self.cv.wait(left)
            return list(self.messages)

    def wait_end(self, timeout=10):
        with self.cv:
            self.cv.wait_for(lambda: self.end is not None, timeout)
            return self.end

    def ids(self):
        with self.cv:
            return [m.message_id for m in self.messages]

    def cancel(self):
        self.call.cancel()
        self.wait_end(10)


class PushTest(ProxyMixin, t.TestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        t.raise_nofile()
        cls.srv = t.Server(extra_env=ENV).__enter__()
        cls.people = People(cls.srv)
        # Until server/main.c calls fxb_inbox_push_start, the push thread
        # (and with it the development sink) starts with the first Subscribe.
        who = t.sign_in(cls.srv)
        r = Reader(cls.srv, who.md())
        time.sleep(0.3)
        r.call.cancel()
        r.wait_end()

    @classmethod
    def tearDownClass(cls):
        cls.srv.__exit__(None, None, None)

    # --- helpers -------------------------------------------------------------
    def put(self, subject, n=1, start=0, body=None, url=None):
        """Appends n notices as fxb_inbox_append does (XADD then PUBLISH);
        returns their ids, oldest first."""
        cmds = []
        for i in range(start, start + n):
            cmds.append(["XADD", key_of(subject), "MAXLEN", "~", INBOX_MAX, "*",
                         "kind", "test.push", "title", "消息%d" % i,
                         "body", body if body is not None else "正文%d" % i,
                         "ref", "ref-%d" % i, "at_ms", 1700000000000 + i])
            cmds.append(["PUBLISH", CHANNEL, subject])
        replies = t.redis_cmds(url or self.srv.redis_url, cmds)
        return [r.decode() for r in replies[0::2]]

    def subscribe(self, who, **kw):
        md = who.md() if hasattr(who, "md") else who
        return Reader(self.srv, md, **kw)

    def fails(self, md, code, reason, **kw):
        r = Reader(self.srv, md, **kw)
        end = r.wait_end(20)
        self.assertIsInstance(end, grpc.RpcError, "the stream did not fail: %r" % (end,))
        self.assertRpcError(end, code, reason)
        self.assertEqual(r.messages, [])

    def l2(self):
        return self.people.l2_person()[0]

    def l3(self):
        return self.people.l3_person()[0]

    def sink_entries(self, url=None):
        """fxb:dev:push and fxb:push:outbox entries as dicts (newest 5000)."""
        out = []
        for key in (DEV_SINK, OUTBOX):
            for _id, fields in t.redis_cmd(url or self.srv.redis_url, "XREVRANGE", key, "+",
                                           "-", "COUNT", 5000) or []:
                out.append((key, {k.decode(): v.decode() for k, v in
                                  zip(fields[0::2], fields[1::2])}))
        return out

    def forged(self, base_who, subject):
        """Metadata of a token for subject riding on base_who's session."""
        claims = t.jwt_decode(base_who.access)[1]
        return t.bearer(t.forge_token(self.srv, base=claims, sub=subject,
                                      jti=uuid.uuid4().hex))

    # --- replay and live ---------------------------------------------------------
    def test_replay_comes_oldest_first_then_new_messages_live(self):
        who = t.sign_in(self.srv)
        ids = self.put(who.account_id, 3)
        self.mark_read(who, ids[0])
        r = self.subscribe(who)
        got = r.wait(3)
        self.assertEqual([m.message_id for m in got], ids)
        m = got[1]
        self.assertEqual((m.kind, m.title, m.body, m.ref, m.at_ms, m.read),
                         ("test.push", "消息1", "正文1", "ref-1", 1700000000001, False))
        self.assertEqual([m.read for m in got], [True, False, False])
        live = self.put(who.account_id, 2, start=3)
        got = r.wait(5)
        self.assertEqual([m.message_id for m in got], ids + live)
        self.assertEqual(got[4].title, "消息4")
        time.sleep(0.3)
        self.assertEqual(len(r.ids()), 5, "no duplicate after the live ones")
        r.cancel()
        self.assertEqual(r.end.code(), CANCELLED)

    def mark_read(self, who, up_to):
        i = inbox_pb()
        self.srv.unary(SVC + "MarkRead", i.MarkReadRequest, i.MarkReadResponse)(
            i.MarkReadRequest(up_to_id=up_to), metadata=who.md(), timeout=20)

    def test_after_id_replays_only_what_follows_it(self):
        who = t.sign_in(self.srv)
        ids = self.put(who.account_id, 5)
        r = self.subscribe(who, after_id=ids[2])
        self.assertEqual([m.message_id for m in r.wait(2)], ids[3:])
        r.cancel()
        # after the newest: nothing until something new
        r = self.subscribe(who, after_id=ids[4])
        time.sleep(0.3)
        self.assertEqual(r.ids(), [])
        [new] = self.put(who.account_id, 1, start=5)
        self.assertEqual([m.message_id for m in r.wait(1)], [new])
        r.cancel()
        # an id that names no message: whatever lies above it, as numbers
        other = t.sign_in(self.srv)
        t.redis_cmds(self.srv.redis_url, [
            ["XADD", key_of(other.account_id), mid, "kind", "test.push", "title", "t",
             "body", "", "ref", "", "at_ms", 1] for mid in ("9-1", "10-0", "10-5", "200-0")])
        r = self.subscribe(other, after_id="10-3")
        self.assertEqual([m.message_id for m in r.wait(2)], ["10-5", "200-0"])
        r.cancel()
        r = self.subscribe(other, after_id="9-9")
        self.assertEqual([m.message_id for m in r.wait(3)], ["10-0", "10-5", "200-0"])
        r.cancel()

    def test_an_empty_inbox_waits_for_the_first_message(self):
        who = t.sign_in(self.srv)
        r = self.subscribe(who)
        time.sleep(0.3)
        self.assertEqual((r.ids(), r.end), ([], None))
        [mid] = self.put(who.account_id, 1)
        self.assertEqual([m.message_id for m in r.wait(1)], [mid])
        r.cancel()

    def test_resuming_with_the_last_id_has_no_gap_and_no_duplicate(self):
        who = t.sign_in(self.srv)
        total = 200
        written = []
        done = threading.Event()

        def burst():
            for k in range(0, total, 10):
                written.extend(self.put(who.account_id, 10, start=k))
                time.sleep(0.005)
            done.set()

        first = self.subscribe(who)
        writer = threading.Thread(target=burst)
        writer.start()
        first.wait(73, timeout=20)
        first.cancel()
        part1 = first.ids()
        self.assertGreaterEqual(len(part1), 73)
        second = self.subscribe(who, after_id=part1[-1])
        writer.join(30)
        self.assertTrue(done.is_set())
        self.assertEqual(len(written), total)
        second.wait_id(written[-1], timeout=20)
        time.sleep(0.3)
        part2 = second.ids()
        self.assertEqual(part1 + part2, written)
        second.cancel()

    def test_a_notice_written_by_a_real_flow_arrives_live(self):
        principal, agent = self.l3(), self.l2()
        r = self.subscribe(agent)
        time.sleep(0.2)
        g = self.offer(principal, agent)
        [m] = r.wait(1)
        self.assertEqual((m.kind, m.ref, m.read), ("proxy.offered", g.grant_id, False))
        self.assertEqual(m.title, "您收到一项代办授权邀请")
        listed = self.notices(agent, ref=g.grant_id, kind="proxy.offered")
        self.assertEqual([x.message_id for x in listed], [m.message_id])
        r.cancel()

    def test_a_message_published_while_the_subscriber_reconnects_is_not_missed(self):
        who = t.sign_in(self.srv)
        r = self.subscribe(who)
        time.sleep(0.3)
        # drop every pub/sub connection, then append at once: the wake-up is
        # published while the server is not listening
        cmds = [["CLIENT", "KILL", "TYPE", "pubsub"],
                ["XADD", key_of(who.account_id), "MAXLEN", "~", INBOX_MAX, "*", "kind",
                 "test.push", "title", "重连", "body", "", "ref", "", "at_ms", 1],
                ["PUBLISH", CHANNEL, who.account_id]]
        replies = t.redis_cmds(self.srv.redis_url, cmds)
        self.assertEqual(replies[2], 0, "nobody heard the publication")
        [m] = r.wait(1, timeout=10)
        self.assertEqual(m.message_id, replies[1].decode())
        # and live delivery goes on over the new connection
        [mid] = self.put(who.account_id, 1)
        self.assertEqual(r.wait(2)[1].message_id, mid)
        r.cancel()

    # --- several servers --------------------------------------------------------------
    def test_a_notice_written_through_one_server_reaches_a_subscriber_on_another(self):
        principal, agent = self.l3(), self.l2()
        # another instance of the deployment: same Redis, same keys
        env = dict(ENV, FXB_DATA_DIR=self.srv.env["FXB_DATA_DIR"])
        with t.Server(extra_env=env, provision_keys=False) as other:
            r = Reader(other, agent.md())
            time.sleep(0.3)
            g = self.offer(principal, agent)  # through self.srv
            [m] = r.wait(1)
            self.assertEqual((m.kind, m.ref), ("proxy.offered", g.grant_id))
            # and the other way round, with a burst
            ids = self.put(agent.account_id, 20)
            got = r.wait(21)
            self.assertEqual([x.message_id for x in got[1:]], ids)
            r.cancel()

    def test_one_batch_publication_wakes_each_subject_it_names_on_every_server(self):
        # fxb_inbox_append_batch publishes once per round trip: the subjects
        # separated by "\n" (store/inbox.h)
        base = t.sign_in(self.srv)
        subjects = ["push%s" % secrets.token_hex(8) for _ in range(6)]
        env = dict(ENV, FXB_DATA_DIR=self.srv.env["FXB_DATA_DIR"])
        with t.Server(extra_env=env, provision_keys=False) as other:
            readers = [Reader(other if k % 2 else self.srv, self.forged(base, s))
                       for k, s in enumerate(subjects)]
            time.sleep(0.3)
            cmds = [["XADD", key_of(s), "MAXLEN", "~", INBOX_MAX, "*", "kind", "test.push",
                     "title", "批量", "body", "", "ref", "", "at_ms", 1700000000000]
                    for s in subjects]
            # pieces that name nobody (empty, longer than an id) are skipped
            payload = "\n".join(subjects[:3] + ["", "x" * 65] + subjects[3:])
            cmds.append(["PUBLISH", CHANNEL, payload])
            replies = t.redis_cmds(self.srv.redis_url, cmds)
            self.assertGreaterEqual(replies[-1], 2, "both servers listen")
            for r, mid in zip(readers, replies[:-1]):
                [m] = r.wait(1)
                self.assertEqual(m.message_id, mid.decode())
            # a single subject is still a payload of its own
            [mid] = self.put(subjects[1], 1)
            self.assertEqual(readers[1].wait(2)[1].message_id, mid)
            for r in readers:
                r.cancel()

    # --- scale and back-pressure -------------------------------------------------------
    def test_200_subscriptions_all_receive_a_message_within_a_second(self):
        base = t.sign_in(self.srv)
        n = 200
        subjects = ["push%s" % secrets.token_hex(8) for _ in range(n)]
        for s in subjects:
            self.put(s, 1)
        channels = [self.srv.new_channel() for _ in range(4)]
        readers = [Reader(self.srv, self.forged(base, s), channel=channels[k % 4])
                   for k, s in enumerate(subjects)]
        for r in readers:  # the replay proves each one registered
            r.wait(1, timeout=30)
        cmds = []
        for s in subjects:
            cmds.append(["XADD", key_of(s), "MAXLEN", "~", INBOX_MAX, "*", "kind", "test.push",
                         "title", "群发", "body", "", "ref", "", "at_ms", 1700000000000])
            cmds.append(["PUBLISH", CHANNEL, s])
        t0 = time.monotonic()
        ids = [x.decode() for x in t.redis_cmds(self.srv.redis_url, cmds)[0::2]]
        for r, mid in zip(readers, ids):
            r.wait_id(mid, timeout=5)
        elapsed = time.monotonic() - t0
        self.assertLess(elapsed, 1.0, "200 subscriptions took %.3f s" % elapsed)
        for r in readers:
            self.assertEqual(len(r.ids()), 2)
            r.call.cancel()
        for r in readers:
            r.wait_end()

    def test_a_reader_that_does_not_read_costs_a_bounded_queue(self):
        # A server of its own with ASan's quarantine off: freed memory held
        # for use-after-free checks would read as growth.
        asan = os.environ.get("ASAN_OPTIONS", "")
        env = dict(ENV, ASAN_OPTIONS=(asan + ":" if asan else "") + "quarantine_size_mb=0")
        with t.Server(extra_env=env) as srv:
            who = t.sign_in(srv)
            i = inbox_pb()
            fn = srv.unary_stream(SVC + "Subscribe", i.SubscribeRequest, i.InboxMessage,
                                  srv.new_channel())
            # never read until the end (grpcio asks for a message on next())
            call = fn(i.SubscribeRequest(), metadata=who.md())
            ids = self.put(who.account_id, 1, url=srv.redis_url)
            time.sleep(0.5)
            body = "长" * 330  # ~1 KB per message
            total, samples = 20000, []
            for k in range(1, total, 500):
                ids += self.put(who.account_id, min(500, total - k), start=k, body=body,
                                url=srv.redis_url)
                if k in (2001, total - 499):
                    time.sleep(0.5)
                    samples.append(rss_kib(srv.proc.pid))
            growth_mib = (samples[1] - samples[0]) / 1024.0
            print("\n  server RSS %d KiB after 2,000 messages, %d KiB after 20,000" %
                  tuple(samples))
            # buffering the 18,000 messages in between would take 18 MB of
            # payload alone
            self.assertLess(growth_mib, 6, "RSS grew by %.1f MiB" % growth_mib)
            kept = [x[0].decode() for x in
                    t.redis_cmd(srv.redis_url, "XRANGE", key_of(who.account_id), "-", "+")]
            self.assertLess(len(kept), INBOX_MAX + 200)
            got = []
            for m in call:
                got.append(m.message_id)
                if m.message_id == ids[-1]:
                    break
            call.cancel()
            keys = [id_key(x) for x in got]
            self.assertEqual(keys, sorted(set(keys)), "in order, no duplicate")
            self.assertEqual(got[0], ids[0])
            self.assertTrue(set(kept) <= set(got), "every message still kept was delivered")
            self.assertTrue(set(got) <= set(ids))

    def test_one_inbox_may_have_at_most_64_subscriptions_per_server(self):
        who = t.sign_in(self.srv)
        self.put(who.account_id, 1)
        ch = self.srv.new_channel()
        readers = [Reader(self.srv, who.md(), channel=ch) for _ in range(PER_SUBJECT_MAX)]
        for r in readers:
            r.wait(1)
        extra = Reader(self.srv, who.md(), channel=ch)
        end = extra.wait_end(10)
        self.assertIsInstance(end, grpc.RpcError)
        self.assertRpcError(end, EXHAUSTED, "TOO_MANY_SUBSCRIPTIONS")
        readers[0].cancel()
        again = t.wait_until(lambda: (lambda r: r if r.wait_end(0.5) is None else None)(
            Reader(self.srv, who.md(), channel=ch)), timeout=10)
        self.assertIsNotNone(again, "a freed place is taken again")
        again.wait(1)
        for r in readers[1:] + [again]:
            r.call.cancel()
        for r in readers[1:] + [again]:
            r.wait_end()

    # --- enterprises and agents -----------------------------------------------------------
    def test_the_legal_representative_and_a_staff_agent_with_inbox_read_both_receive(self):
        rep, _, ent = self.people.enterprise_with_rep()
        eid = ent.enterprise_id
        staff = self.l2()
        g, token = self.delegated(rep, staff, enterprise_id=eid)
        by_rep = self.subscribe(rep, enterprise_id=eid)
        by_staff = self.subscribe(t.bearer(token))
        by_staff_named = self.subscribe(t.bearer(token), enterprise_id=eid)
        # the replay: the enterprise's notices so far (staff accepted g)
        n0 = len(by_rep.wait(1))
        for r in (by_staff, by_staff_named):
            self.assertEqual([m.message_id for m in r.wait(n0)], by_rep.ids()[:n0])
        other = self.l2()
        g2 = self.offer(rep, other, enterprise_id=eid)
        self.accept(other, g2.grant_id)
        for r in (by_rep, by_staff, by_staff_named):
            got = t.wait_until(lambda: [m for m in list(r.messages)
                                        if m.ref == g2.grant_id and m.kind == "proxy.accepted"],
                               timeout=5)
            self.assertTrue(got, "proxy.accepted not received")
        self.assertEqual(by_rep.ids(), by_staff.ids())
        # the representative's own inbox is another stream
        own = self.subscribe(rep)
        time.sleep(0.3)
        self.assertFalse(set(own.ids()) & set(by_rep.ids()))
        for r in (by_rep, by_staff, by_staff_named, own):
            r.cancel()

    def test_an_agent_without_inbox_read_is_out_of_scope(self):
        principal, agent = self.l3(), self.l2()
        g, token = self.delegated(principal, agent, scopes=("benefits.read",))
        self.fails(t.bearer(token), DENIED, "OUT_OF_SCOPE")

    def test_an_agent_for_a_person_may_not_name_an_enterprise(self):
        rep, _, ent = self.people.enterprise_with_rep()
        agent = self.l2()
        g, token = self.delegated(rep, agent)  # a grant of the person, not of the enterprise
        self.fails(t.bearer(token), DENIED, "OUT_OF_SCOPE", enterprise_id=ent.enterprise_id)

    def test_only_the_bound_legal_representative_subscribes_to_an_enterprise(self):
        rep, _, ent = self.people.enterprise_with_rep()
        other = t.sign_in(self.srv)
        self.fails(other.md(), DENIED, "NOT_LEGAL_REPRESENTATIVE",
                   enterprise_id=ent.enterprise_id)
        self.fails(other.md(), INVALID, "ENTERPRISE_ID_INVALID",
                   enterprise_id=ent.enterprise_id.upper())

    def test_an_unauthenticated_caller_is_refused(self):
        self.fails(None, UNAUTH, "TOKEN_MISSING")
        self.fails([("authorization", "Bearer abc")], UNAUTH, "TOKEN_MALFORMED")

    def test_after_id_must_be_ms_dash_seq(self):
        who = t.sign_in(self.srv)
        for bad in ("abc", "1", "1-", "-1", "(1-1", "1-1-1", " 1-1", "01-1", "1-01", "+",
                    "18446744073709551616-0", "１-１"):
            with self.subTest(after_id=bad):
                self.fails(who.md(), INVALID, "MESSAGE_ID_INVALID", after_id=bad)
        # the largest id is well-formed: nothing can follow it
        r = self.subscribe(who, after_id="18446744073709551615-18446744073709551615")
        self.put(who.account_id, 1)
        time.sleep(0.3)
        self.assertEqual((r.ids(), r.end), ([], None))
        r.cancel()

    # --- vendor push outbox ----------------------------------------------------------
    def test_a_notice_to_an_offline_subject_goes_to_the_vendor_push_sink(self):
        principal, agent = self.l3(), self.l2()
        g = self.offer(principal, agent)
        [notice] = self.wait_notices(agent, 1, g.grant_id, "proxy.offered")
        want = {"subject": agent.account_id, "message_id": notice.message_id,
                "kind": "proxy.offered", "title": "您收到一项代办授权邀请"}
        found = t.wait_until(lambda: [f for key, f in self.sink_entries()
                                      if key == DEV_SINK and f.get("message_id") ==
                                      notice.message_id], timeout=5)
        self.assertEqual(found, [want])

    def test_a_notice_to_a_subscribed_subject_is_not_pushed_by_the_vendor(self):
        principal, agent = self.l3(), self.l2()
        r = self.subscribe(agent)
        online = t.wait_until(lambda: t.redis_cmd(self.srv.redis_url, "GET",
                                                  ONLINE + agent.account_id), timeout=5)
        self.assertEqual(online, b"1")
        ttl = t.redis_cmd(self.srv.redis_url, "TTL", ONLINE + agent.account_id)
        self.assertTrue(0 < ttl <= 90, ttl)
        g = self.offer(principal, agent)
        [m] = r.wait(1)
        self.assertEqual(m.ref, g.grant_id)
        time.sleep(1.0)  # several runs of the development sink
        self.assertEqual([f for _, f in self.sink_entries()
                          if f.get("message_id") == m.message_id], [])
        r.cancel()
        # once the last subscription ends the subject is offline again
        self.assertIsNotNone(t.wait_until(lambda: t.redis_cmd(
            self.srv.redis_url, "EXISTS", ONLINE + agent.account_id) == 0, timeout=5))

    # --- multicast outbox entries (fxb_inbox_append_batch) -----------------------------
    def sink_since(self, start):
        """fxb:dev:push entries after id start (exclusive), oldest first, as
        lists of (field, value) pairs in their order."""
        out = []
        for _id, fields in t.redis_cmd(self.srv.redis_url, "XRANGE", DEV_SINK, "(" + start,
                                       "+") or []:
            f = [x.decode() for x in fields]
            out.append(list(zip(f[0::2], f[1::2])))
        return out

    def sink_mark(self):
        last = t.redis_cmd(self.srv.redis_url, "XREVRANGE", DEV_SINK, "+", "-", "COUNT", 1)
        return last[0][0].decode() if last else "0-0"

    def multicast(self, kind, title, subjects, ids, n=None):
        fields = ["kind", kind, "title", title, "n", str(len(subjects)) if n is None else n,
                  "subjects", "\n".join(subjects), "message_ids", "\n".join(ids)]
        return ["XADD", OUTBOX, "*"] + fields

    def test_a_multicast_outbox_entry_reaches_the_vendor_sink_once_per_subject(self):
        # the shape of store/inbox.h: kind, title, n, subjects, message_ids;
        # the development sink (the vendor adaptor) sends one push per
        # subject, in the single shape, in order
        mark = self.sink_mark()
        tag = secrets.token_hex(6)
        subjects = ["mc%s%d" % (tag, k) for k in range(5)]
        ids = ["1700000000000-%d" % k for k in range(5)]
        single = ("mc%s-single" % tag, "1700000000001-0")
        t.redis_cmds(self.srv.redis_url, [
            self.multicast("benefit.granted", "惠民政策「高龄津贴」已为您办理", subjects, ids),
            ["XADD", OUTBOX, "*", "subject", single[0], "message_id", single[1],
             "kind", "proxy.offered", "title", "您收到一项代办授权邀请"]])

        def mine():
            got = [f for f in self.sink_since(mark) if dict(f).get("subject", "").startswith(
                "mc" + tag)]
            return got if len(got) >= 6 else None
        got = t.wait_until(mine, timeout=5)
        self.assertIsNotNone(got, "the sink did not copy all six")
        want = [[("subject", sub), ("message_id", mid), ("kind", "benefit.granted"),
                 ("title", "惠民政策「高龄津贴」已为您办理")] for sub, mid in zip(subjects, ids)]
        want.append([("subject", single[0]), ("message_id", single[1]),
                     ("kind", "proxy.offered"), ("title", "您收到一项代办授权邀请")])
        self.assertEqual(got, want)

    def test_a_malformed_multicast_entry_is_dropped_without_blocking_the_queue(self):
        mark = self.sink_mark()
        tag = secrets.token_hex(6)
        bad_subjects = ["bad%s%d" % (tag, k) for k in range(3)]
        ids = ["1-%d" % k for k in range(3)]
        k, t_ = "benefit.granted", "标题"
        bad = [
            self.multicast(k, t_, bad_subjects, ids, n="4"),         # n above the lists
            self.multicast(k, t_, bad_subjects, ids, n="2"),         # n below
            self.multicast(k, t_, bad_subjects, ids[:2]),            # lists differ
            self.multicast(k, t_, bad_subjects, ids, n="03"),        # not plain decimal
            self.multicast(k, t_, bad_subjects, ids, n="3.0"),
            self.multicast(k, t_, ["bad%s-%d" % (tag, x) for x in range(1001)],
                           ["1-%d" % x for x in range(1001)]),  # past FXB_PUSH_MULTICAST_MAX
            self.multicast(k, t_, [bad_subjects[0], "", bad_subjects[2]], ids),  # empty piece
            self.multicast(k, t_, bad_subjects[:2] + [bad_subjects[2] + "\n"], ids),
            ["XADD", OUTBOX, "*", "kind", k, "n", "3", "subjects", "\n".join(bad_subjects),
             "message_ids", "\n".join(ids)],                      # no title
            ["XADD", OUTBOX, "*", "title", t_, "subjects", bad_subjects[0]],  # no n
            ["XADD", OUTBOX, "*"] + sum([["f%d" % x, "v"] for x in range(40)], []),
        ]
        good = ["good%s%d" % (tag, x) for x in range(2)]
        replies = t.redis_cmds(self.srv.redis_url, bad + [
            self.multicast(k, t_, good, ["2-0", "2-1"])])
        bad_ids = [r.decode() for r in replies[:-1]]

        def mine():
            got = [dict(f).get("subject") for f in self.sink_since(mark)]
            return got if set(good) <= set(got) else None
        got = t.wait_until(mine, timeout=5)
        self.assertIsNotNone(got, "the good entry after the bad ones did not move")
        self.assertEqual([x for x in got if x and tag in x], good)
        self.assertEqual([f for f in self.sink_since(mark) if dict(f).get("f0")], [],
                         "the entry of 40 fields is dropped")
        # the bad ones are acknowledged, not left pending
        for mid in bad_ids:
            pending = t.redis_cmd(self.srv.redis_url, "XPENDING", OUTBOX, "dev-sink", mid, mid, 1)
            self.assertEqual(pending, [], mid)

    def test_full_multicast_entries_all_reach_the_sink(self):
        # three entries of FXB_PUSH_MULTICAST_MAX subjects: more than one
        # run of the sink may copy (SINK_COPIES), so they take several
        mark = self.sink_mark()
        tag = secrets.token_hex(6)
        cmds, want = [], []
        for e in range(3):
            subjects = ["f%s%d-%d" % (tag, e, x) for x in range(1000)]
            ids = ["%d-%d" % (1700000000000 + e, x) for x in range(1000)]
            cmds.append(self.multicast("benefit.paid", "第%d批" % e, subjects, ids))
            want += list(zip(subjects, ids))
        t.redis_cmds(self.srv.redis_url, cmds)

        def mine():
            got = [(d["subject"], d["message_id"]) for d in map(dict, self.sink_since(mark))
                   if d.get("subject", "").startswith("f" + tag)]
            return got if len(got) >= len(want) else None
        got = t.wait_until(mine, timeout=10)
        self.assertIsNotNone(got, "not every subject reached the sink")
        self.assertEqual(got, want)

    def test_a_multicast_entry_reaches_the_sink_only_for_subjects_offline_when_it_sends(self):
        # a batch names every recipient (store/inbox.h); the adaptor reads
        # presence when it sends and skips a subject with a live
        # subscription (its device got the notice live)
        agent = self.l2()
        r = self.subscribe(agent)
        online = t.wait_until(lambda: t.redis_cmd(self.srv.redis_url, "GET",
                                                  ONLINE + agent.account_id), timeout=5)
        self.assertEqual(online, b"1")
        mark = self.sink_mark()
        tag = secrets.token_hex(6)
        before, zero, after = ("on%s%d" % (tag, k) for k in range(3))
        # a counter of 0 is offline, as an absent one
        t.redis_cmd(self.srv.redis_url, "SET", ONLINE + zero, "0", "EX", 60)
        subjects = [before, agent.account_id, zero, after]
        ids = ["1700000000000-%d" % k for k in range(4)]
        entry = t.redis_cmd(self.srv.redis_url, *self.multicast(
            "benefit.granted", "惠民政策「高龄津贴」已为您办理", subjects, ids)).decode()

        def acked():
            return t.redis_cmd(self.srv.redis_url, "XPENDING", OUTBOX, "dev-sink", entry,
                               entry, 1) == [] and self.sink_since(mark)
        self.assertIsNotNone(t.wait_until(acked, timeout=5), "the entry was not moved")
        # ack and copies are one script: once acked, every copy is there
        got = [d for d in map(dict, self.sink_since(mark))
               if d.get("subject") in subjects]
        self.assertEqual(got, [{"subject": sub, "message_id": mid, "kind": "benefit.granted",
                                "title": "惠民政策「高龄津贴」已为您办理"}
                               for sub, mid in zip(subjects, ids) if sub != agent.account_id])
        r.cancel()

    def test_an_entry_left_pending_by_a_sink_that_stopped_is_still_delivered(self):
        # the sink reads entries, then reads presence, then acks and copies
        # them in one script: an entry read but never acked (a crash
        # between the steps) is pending for consumer "fxb-server" and the
        # next run reads it first. Made here by reading it ourselves as
        # that consumer, in the same script as the XADD, so the server's
        # sink cannot take it as new first.
        mark = self.sink_mark()
        tag = secrets.token_hex(6)
        subjects = ["pend%s%d" % (tag, k) for k in range(2)]
        ids = ["1700000000002-%d" % k for k in range(2)]
        single = ("pend%s-single" % tag, "1700000000003-0")
        script = (
            "redis.pcall('XGROUP', 'CREATE', KEYS[1], 'dev-sink', '0', 'MKSTREAM')\n"
            "local a = redis.call('XADD', KEYS[1], '*', 'kind', 'benefit.granted',\n"
            "  'title', ARGV[1], 'n', '2', 'subjects', ARGV[2], 'message_ids', ARGV[3])\n"
            "local b = redis.call('XADD', KEYS[1], '*', 'subject', ARGV[4],\n"
            "  'message_id', ARGV[5], 'kind', 'proxy.offered', 'title', ARGV[1])\n"
            "redis.call('XREADGROUP', 'GROUP', 'dev-sink', 'fxb-server', 'COUNT', 1000000,\n"
            "  'STREAMS', KEYS[1], '>')\n"
            "return {a, b}\n")
        a, b = (x.decode() for x in t.redis_cmd(
            self.srv.redis_url, "EVAL", script, 1, OUTBOX, "标题", "\n".join(subjects),
            "\n".join(ids), single[0], single[1]))
        for mid in (a, b):
            p = t.redis_cmd(self.srv.redis_url, "XPENDING", OUTBOX, "dev-sink", mid, mid, 1)
            self.assertEqual([(x[0].decode(), x[1].decode()) for x in p],
                             [(mid, "fxb-server")])

        def mine():
            got = [(d["subject"], d["message_id"]) for d in map(dict, self.sink_since(mark))
                   if d.get("subject", "").startswith("pend" + tag)]
            return got if len(got) >= 3 else None
        got = t.wait_until(mine, timeout=5)
        self.assertIsNotNone(got, "the pending entries were not delivered")
        self.assertEqual(got, list(zip(subjects, ids)) + [single])
        for mid in (a, b):
            self.assertEqual(t.redis_cmd(self.srv.redis_url, "XPENDING", OUTBOX, "dev-sink",
                                         mid, mid, 1), [], mid)
        time.sleep(0.5)  # more runs of the sink: each copied once
        self.assertEqual(len([d for d in map(dict, self.sink_since(mark))
                              if d.get("subject", "").startswith("pend" + tag)]), 3)


class PushShutdownTest(t.TestCase):
    def test_shutdown_ends_open_subscriptions_with_unavailable(self):
        srv = t.Server(extra_env=dict(ENV, FXB_SHUTDOWN_GRACE_MS="8000"))
        with srv:
            who = t.sign_in(srv)
            readers = [Reader(srv, who.md()) for _ in range(3)]
            time.sleep(0.5)
            t0 = time.monotonic()
            srv.send_signal(signal.SIGTERM)
            for r in readers:
                end = r.wait_end(10)
                self.assertIsInstance(end, grpc.RpcError, "stream did not end: %r" % (end,))
                self.assertRpcError(end, UNAVAILABLE, "SHUTTING_DOWN")
            self.assertLess(time.monotonic() - t0, 5, "streams ended by the grace period")
            self.assertExitCode(srv, srv.wait(20), 0)


if __name__ == "__main__":
    t.main()
