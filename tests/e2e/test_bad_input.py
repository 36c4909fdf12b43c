"""What the runtime does with bad or hostile input: garbage payloads,
unknown methods, oversize messages, deadlines, out-of-range arguments,
client cancellation, and secrets in headers."""
import time

import grpc

import fxbtest as t

SECRET = "Bearer secret-token-XYZ"


class BadInputTest(t.TestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.srv = t.Server(extra_env={"FXB_MAX_RECV_BYTES": "65536"}).__enter__()
        cls.D = t.diag_pb()

    @classmethod
    def tearDownClass(cls):
        cls.srv.__exit__(None, None, None)

    def raw_unary(self, path):
        # no serializers: bytes go out and come back as they are
        return self.srv.channel.unary_unary(path)

    def test_garbage_payload_is_invalid_argument_malformed_request(self):
        self.assertCallFails(lambda: self.raw_unary("/fxb.v1.SystemService/GetInfo")(
            b"\xff\xff\xff", timeout=5), grpc.StatusCode.INVALID_ARGUMENT, "MALFORMED_REQUEST")

    def test_garbage_payload_to_a_server_stream_is_malformed_request(self):
        call = self.srv.channel.unary_stream("/fxb.v1.DiagService/Ticks")
        self.assertCallFails(lambda: list(call(b"\x0a\xff", timeout=5)),
                             grpc.StatusCode.INVALID_ARGUMENT, "MALFORMED_REQUEST")

    def test_garbage_message_in_a_bidi_stream_is_malformed_request(self):
        call = self.srv.channel.stream_stream("/fxb.v1.DiagService/Chat")
        ok = self.D.EchoRequest(text="a").SerializeToString()
        self.assertCallFails(lambda: list(call(iter([ok, b"\xff\xff\xff"]), timeout=5)),
                             grpc.StatusCode.INVALID_ARGUMENT, "MALFORMED_REQUEST")

    def test_unknown_method_is_unimplemented(self):
        self.assertCallFails(lambda: self.raw_unary("/fxb.v1.SystemService/NoSuchMethod")(
            b"", timeout=5), grpc.StatusCode.UNIMPLEMENTED, "UNKNOWN_METHOD")

    def test_unknown_service_is_unimplemented(self):
        self.assertCallFails(lambda: self.raw_unary("/no.such.v1.Service/Method")(
            b"", timeout=5), grpc.StatusCode.UNIMPLEMENTED, "UNKNOWN_METHOD")
        line = self.srv.wait_log(lambda l: l.get("msg") == "rpc" and
                                 l.get("method") == "/no.such.v1.Service/Method")
        self.assertIsNotNone(line, "unknown method not logged")
        self.assertEqual(line["status"], "UNIMPLEMENTED")

    def test_unknown_streaming_method_is_unimplemented(self):
        call = self.srv.channel.stream_stream("/fxb.v1.DiagService/NoSuchStream")
        self.assertCallFails(lambda: list(call(iter([b"", b""]), timeout=5)),
                             grpc.StatusCode.UNIMPLEMENTED)

    def test_oversize_message_is_resource_exhausted(self):
        req = self.D.EchoRequest(text="big", padding=b"\0" * (100 * 1024))
        self.assertCallFails(lambda: self.srv.echo()(req, timeout=10),
                             grpc.StatusCode.RESOURCE_EXHAUSTED)
        # the server is fine afterwards
        self.assertEqual(self.srv.echo()(self.D.EchoRequest(text="small"), timeout=5).text,
                         "small")

    def test_message_just_under_the_limit_is_accepted(self):
        req = self.D.EchoRequest(text="fits", padding=b"\0" * (60 * 1024))
        self.assertEqual(self.srv.echo()(req, timeout=10).text, "fits")

    def test_per_method_limit_health_check_2k_name_is_resource_exhausted(self):
        req = t.health_pb().HealthCheckRequest(service="s" * 2048)
        self.assertCallFails(lambda: self.srv.health_check()(req, timeout=5),
                             grpc.StatusCode.RESOURCE_EXHAUSTED, "MESSAGE_TOO_LARGE")

    def test_deadline_expiring_during_the_call_is_deadline_exceeded_and_logged(self):
        rid = "deadline-test-1"
        t0 = time.monotonic()
        self.assertCallFails(lambda: self.srv.echo()(
            self.D.EchoRequest(text="slow", sleep_ms=2000), timeout=0.3,
            metadata=[("x-request-id", rid)]), grpc.StatusCode.DEADLINE_EXCEEDED)
        self.assertLess(time.monotonic() - t0, 1.5)
        line = self.srv.wait_log(lambda l: l.get("msg") == "rpc" and l.get("request_id") == rid,
                                 timeout=5)
        self.assertIsNotNone(line, "the server did not log the expired call")
        self.assertEqual(line["method"], "/fxb.v1.DiagService/Echo")
        self.assertEqual(line["status"], "DEADLINE_EXCEEDED")
        # the handler stopped at the deadline rather than sleeping on
        self.assertLess(line["duration_us"], 1500000)

    def test_echo_sleep_over_30000_is_invalid_argument(self):
        self.assertCallFails(lambda: self.srv.echo()(
            self.D.EchoRequest(sleep_ms=30001), timeout=5),
            grpc.StatusCode.INVALID_ARGUMENT, "SLEEP_OUT_OF_RANGE")

    def test_ticks_count_0_is_invalid_argument(self):
        self.assertCallFails(lambda: list(self.srv.ticks()(
            self.D.TicksRequest(count=0), timeout=5)),
            grpc.StatusCode.INVALID_ARGUMENT, "COUNT_OUT_OF_RANGE")

    def test_ticks_count_over_10000_and_interval_over_60000_are_invalid_argument(self):
        self.assertCallFails(lambda: list(self.srv.ticks()(
            self.D.TicksRequest(count=10001), timeout=5)),
            grpc.StatusCode.INVALID_ARGUMENT, "COUNT_OUT_OF_RANGE")
        self.assertCallFails(lambda: list(self.srv.ticks()(
            self.D.TicksRequest(count=1, interval_ms=60001), timeout=5)),
            grpc.StatusCode.INVALID_ARGUMENT, "INTERVAL_OUT_OF_RANGE")

    def test_client_cancel_mid_stream_is_noticed_by_the_server(self):
        rid = "cancel-test-1"
        call = self.srv.ticks()(self.D.TicksRequest(count=1000, interval_ms=20), timeout=60,
                                metadata=[("x-request-id", rid)])
        seqs = []
        for tick in call:
            seqs.append(tick.seq)
            if len(seqs) == 3:
                break
        self.assertEqual(seqs, [1, 2, 3])
        inflight = t.metric(self.srv.metrics(), "fxb_rpc_in_flight")
        self.assertGreaterEqual(inflight, 1)
        call.cancel()
        self.assertTrue(t.wait_until(
            lambda: t.metric(self.srv.metrics(), "fxb_rpc_in_flight") == 0, timeout=5),
            "fxb_rpc_in_flight did not return to 0 after the cancel")
        line = self.srv.wait_log(lambda l: l.get("msg") == "rpc" and l.get("request_id") == rid)
        self.assertIsNotNone(line, "no log line for the cancelled Ticks")
        self.assertEqual(line["method"], "/fxb.v1.DiagService/Ticks")
        self.assertEqual(line["status"], "CANCELLED")
        self.assertLess(line["duration_us"], 10 * 1000 * 1000)

    def test_client_cancel_of_a_blocking_unary_is_logged_cancelled(self):
        # Echo blocks its worker while it sleeps, so the worker sees the
        # cancel only when the handler returns (handler.h: "as far as the
        # worker has seen"); the outcome must still be CANCELLED, not OK.
        rid = "cancel-unary-1"
        fut = self.srv.echo().future(self.D.EchoRequest(sleep_ms=1000), timeout=30,
                                     metadata=[("x-request-id", rid)])
        time.sleep(0.3)
        fut.cancel()
        line = self.srv.wait_log(lambda l: l.get("msg") == "rpc" and l.get("request_id") == rid,
                                 timeout=5)
        self.assertIsNotNone(line, "no log line for the cancelled Echo")
        self.assertEqual(line["status"], "CANCELLED")
        self.assertTrue(t.wait_until(
            lambda: t.metric(self.srv.metrics(), "fxb_rpc_in_flight") == 0, timeout=5))


class SecretsTest(t.TestCase):
    def test_authorization_header_never_appears_in_the_server_log(self):
        D = t.diag_pb()
        md = [("authorization", SECRET), ("x-request-id", "auth-test")]
        with t.Server(extra_env={"FXB_LOG_LEVEL": "debug"}) as srv:
            srv.get_info()(t.system_pb().GetInfoRequest(), metadata=md, timeout=5)
            srv.echo()(D.EchoRequest(text="hi"), metadata=md, timeout=5)
            for fn in (lambda: srv.channel.unary_unary("/fxb.v1.SystemService/GetInfo")(
                           b"\xff\xff", metadata=md, timeout=5),
                       lambda: srv.channel.unary_unary("/x.Y/Z")(b"", metadata=md, timeout=5),
                       lambda: srv.echo()(D.EchoRequest(sleep_ms=40000), metadata=md,
                                          timeout=5),
                       lambda: srv.echo()(D.EchoRequest(sleep_ms=1000), metadata=md,
                                          timeout=0.1)):
                with self.assertRaises(grpc.RpcError):
                    fn()
            self.assertEqual(len(list(srv.chat()(iter([D.EchoRequest(text="x")]),
                                                 metadata=md, timeout=5))), 1)
            t.raw_h2_call(srv.addr, "/fxb.v1.SystemService/GetInfo", b"",
                          [(b"authorization", SECRET.encode() + b"\xff")])
            srv.wait_log(lambda l: l.get("status") == "DEADLINE_EXCEEDED")
            self.assertGreaterEqual(len(srv.rpc_lines()), 7)
            srv.stop()
            log = srv.log()
        self.assertNotIn("secret-token-XYZ", log)
        self.assertNotIn("Bearer", log)


if __name__ == "__main__":
    t.main()
