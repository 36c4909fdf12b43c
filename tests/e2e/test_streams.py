"""The four RPC kinds through fxb.v1.DiagService: unary Echo, client-streaming
Collect, server-streaming Ticks, bidi Chat; ordering, back-pressure and
limits."""
import queue
import threading
import time

import grpc

import fxbtest as t


class StreamsTest(t.TestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.srv = t.Server().__enter__()
        cls.D = t.diag_pb()

    @classmethod
    def tearDownClass(cls):
        cls.srv.__exit__(None, None, None)

    # unary
    def test_echo_returns_text_request_id_and_remaining_time(self):
        resp, call = self.srv.echo().with_call(self.D.EchoRequest(text="héllo 世界"), timeout=10,
                                               metadata=[("x-request-id", "echo-1")])
        self.assertEqual(resp.text, "héllo 世界")
        self.assertEqual(resp.request_id, "echo-1")
        self.assertGreater(resp.remaining_ms, 5000)
        # the client encodes grpc-timeout rounded up to a coarser unit
        self.assertLessEqual(resp.remaining_ms, 10500)
        self.assertEqual(t.initial_md(call).get("x-request-id"), "echo-1")

    def test_echo_without_deadline_reports_minus_one(self):
        resp = self.srv.echo()(self.D.EchoRequest(text="x"))
        self.assertEqual(resp.remaining_ms, -1)
        self.assertTrue(t.is_uuid4(resp.request_id), resp.request_id)

    def test_echo_sleep_takes_about_that_long(self):
        t0 = time.monotonic()
        self.srv.echo()(self.D.EchoRequest(text="z", sleep_ms=200), timeout=10)
        self.assertGreaterEqual(time.monotonic() - t0, 0.19)

    # client streaming
    def test_collect_joins_and_counts_parts(self):
        parts = [self.D.CollectPart(text="p%d," % i) for i in range(500)]
        resp = self.srv.collect()(iter(parts), timeout=20)
        self.assertEqual(resp.count, 500)
        self.assertEqual(resp.joined, "".join("p%d," % i for i in range(500)))

    def test_collect_of_no_parts_is_empty(self):
        resp = self.srv.collect()(iter([]), timeout=10)
        self.assertEqual(resp.count, 0)
        self.assertEqual(resp.joined, "")

    def test_collect_over_10000_parts_is_resource_exhausted(self):
        parts = (self.D.CollectPart(text="x") for _ in range(10001))
        self.assertCallFails(lambda: self.srv.collect()(parts, timeout=60),
                             grpc.StatusCode.RESOURCE_EXHAUSTED, "TOO_MUCH_DATA")

    def test_collect_exactly_10000_parts_is_accepted(self):
        parts = (self.D.CollectPart(text="x") for _ in range(10000))
        resp = self.srv.collect()(parts, timeout=60)
        self.assertEqual(resp.count, 10000)
        self.assertEqual(len(resp.joined), 10000)

    def test_collect_over_1_mib_joined_is_resource_exhausted(self):
        parts = (self.D.CollectPart(text="y" * 60000) for _ in range(20))
        self.assertCallFails(lambda: self.srv.collect()(parts, timeout=60),
                             grpc.StatusCode.RESOURCE_EXHAUSTED, "TOO_MUCH_DATA")

    def test_collect_part_over_64_kib_is_resource_exhausted(self):
        parts = iter([self.D.CollectPart(text="a"), self.D.CollectPart(text="z" * 70000)])
        self.assertCallFails(lambda: self.srv.collect()(parts, timeout=60),
                             grpc.StatusCode.RESOURCE_EXHAUSTED, "MESSAGE_TOO_LARGE")

    # server streaming
    def test_ticks_with_interval_arrive_in_order(self):
        t0 = time.monotonic()
        seqs = [m.seq for m in self.srv.ticks()(self.D.TicksRequest(count=5, interval_ms=50),
                                                timeout=10)]
        self.assertEqual(seqs, [1, 2, 3, 4, 5])
        self.assertGreaterEqual(time.monotonic() - t0, 0.19)

    def test_ticks_10000_read_slowly_all_arrive_in_order(self):
        # interval 0: the server produces as fast as it can; the client reads
        # slowly, so the server must stop at its queue bound and resume
        call = self.srv.ticks()(self.D.TicksRequest(count=10000, interval_ms=0), timeout=120)
        seqs = []
        for m in call:
            seqs.append(m.seq)
            if len(seqs) == 1:
                time.sleep(1.0)  # let everything that can pile up pile up
            elif len(seqs) % 500 == 0:
                time.sleep(0.05)
        self.assertEqual(len(seqs), 10000)
        self.assertEqual(seqs, list(range(1, 10001)))
        self.assertEqual(call.code(), grpc.StatusCode.OK)

    # bidi
    def test_chat_1000_messages_answered_in_order(self):
        reqs = (self.D.EchoRequest(text="m%d" % i) for i in range(1000))
        got = [r.text for r in self.srv.chat()(reqs, timeout=60,
                                               metadata=[("x-request-id", "chat-1")])]
        self.assertEqual(got, ["m%d" % i for i in range(1000)])

    def test_chat_ping_pong_one_at_a_time(self):
        q = queue.Queue()

        def gen():
            for i in range(50):
                yield self.D.EchoRequest(text="p%d" % i)
                q.get(timeout=10)

        got = []
        for r in self.srv.chat()(gen(), timeout=30, metadata=[("x-request-id", "pp-1")]):
            got.append(r.text)
            self.assertEqual(r.request_id, "pp-1")
            self.assertGreater(r.remaining_ms, 0)
            q.put(1)
        self.assertEqual(got, ["p%d" % i for i in range(50)])

    def test_chat_client_not_reading_still_gets_everything_in_order(self):
        # the client sends 2000 messages before reading any answer: the
        # server must pause reading at its queue bound, not drop or fail
        reqs = [self.D.EchoRequest(text="n%d" % i, padding=b"\0" * 1000) for i in range(2000)]
        call = self.srv.chat()(iter(reqs), timeout=60)
        time.sleep(1.0)
        got = [r.text for r in call]
        self.assertEqual(got, ["n%d" % i for i in range(2000)])

    def test_concurrent_streams_of_all_kinds(self):
        errors = []

        def run(fn):
            try:
                fn()
            except Exception as e:  # noqa: BLE001 - collected and reported
                errors.append(e)

        D = self.D
        jobs = []
        for i in range(4):
            jobs.append(lambda i=i: self.assertEqual(
                [m.seq for m in self.srv.ticks()(D.TicksRequest(count=200), timeout=30)],
                list(range(1, 201))))
            jobs.append(lambda i=i: self.assertEqual(
                self.srv.collect()(iter([D.CollectPart(text="a")] * 100), timeout=30).count, 100))
            jobs.append(lambda i=i: self.assertEqual(
                len(list(self.srv.chat()(iter([D.EchoRequest(text="c")] * 100), timeout=30))),
                100))
            jobs.append(lambda i=i: self.assertEqual(
                self.srv.echo()(D.EchoRequest(text="e%d" % i), timeout=30).text, "e%d" % i))
        threads = [threading.Thread(target=run, args=(j,)) for j in jobs]
        for th in threads:
            th.start()
        for th in threads:
            th.join(60)
        self.assertEqual(errors, [])


if __name__ == "__main__":
    t.main()
