"""fxb.v1.SystemService/GetInfo and the request metadata every call gets:
x-request-id (echoed or generated) and user-agent."""
import re
import time

import grpc

import fxbtest as t


class SystemTest(t.TestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.srv = t.Server().__enter__()

    @classmethod
    def tearDownClass(cls):
        cls.srv.__exit__(None, None, None)

    def get_info(self, **kw):
        return self.srv.get_info().with_call(t.system_pb().GetInfoRequest(), timeout=10, **kw)

    def rpc_line(self, request_id):
        return self.srv.wait_log(lambda l: l.get("msg") == "rpc" and
                                 l.get("request_id") == request_id)

    def test_get_info_returns_version_schema_and_time(self):
        before = int(time.time() * 1000)
        resp, _ = self.get_info()
        after = int(time.time() * 1000)
        self.assertRegex(resp.server_version, r"^\d+\.\d+\.\d+")
        rc, out, _ = t.run_server_expect_exit(["--version"])
        self.assertEqual(rc, 0)
        self.assertIn(resp.server_version, out)
        self.assertEqual(resp.schema_version, t.latest_schema_version())
        self.assertGreater(resp.schema_version, 0)
        self.assertGreaterEqual(resp.server_time_ms, before - 3000)
        self.assertLessEqual(resp.server_time_ms, after + 3000)

    def test_schema_version_matches_migrate_status(self):
        st = t.run_admin(["migrate", "--status"], redis_url=self.srv.redis_url, check=True).stdout
        applied = int(re.search(r"applied schema version:\s*(\d+)", st).group(1))
        known = int(re.search(r"known schema version:\s*(\d+)", st).group(1))
        self.assertEqual(applied, known)
        resp, _ = self.get_info()
        self.assertEqual(resp.schema_version, known)

    def test_request_id_sent_is_echoed_in_initial_metadata_and_logged(self):
        rid = "test-req_1.2:3"
        _, call = self.get_info(metadata=[("x-request-id", rid)])
        self.assertEqual(t.initial_md(call).get("x-request-id"), rid)
        line = self.rpc_line(rid)
        self.assertIsNotNone(line, "no rpc log line with request_id %s" % rid)
        self.assertEqual(line["method"], "/fxb.v1.SystemService/GetInfo")

    def failing_call(self, metadata=()):
        """A call that fails (unknown health service); returns its RpcError."""
        H = t.health_pb()
        try:
            self.srv.health_check()(H.HealthCheckRequest(service="no-such-service"),
                                    metadata=list(metadata), timeout=10)
        except grpc.RpcError as e:
            return e
        self.fail("the call did not fail")

    def test_request_id_absent_is_generated_logged_and_not_sent_on_success(self):
        _, call = self.get_info()
        self.assertIsNone(t.initial_md(call).get("x-request-id"))
        lines = self.srv.rpc_lines("/fxb.v1.SystemService/GetInfo")
        self.assertTrue(t.is_uuid4(lines[-1]["request_id"]), lines[-1])

    def test_generated_request_id_comes_back_with_a_failure_as_uuid_v4(self):
        e1, e2 = self.failing_call(), self.failing_call()
        rid1 = dict(e1.trailing_metadata()).get("x-request-id")
        rid2 = dict(e2.trailing_metadata()).get("x-request-id")
        self.assertTrue(t.is_uuid4(rid1), rid1)
        self.assertTrue(t.is_uuid4(rid2), rid2)
        self.assertNotEqual(rid1, rid2)
        line = self.rpc_line(rid1)
        self.assertIsNotNone(line)
        self.assertEqual(line["status"], "NOT_FOUND")

    def test_request_id_sent_is_echoed_on_a_failure_too(self):
        e = self.failing_call([("x-request-id", "fail-req-1")])
        self.assertEqual(t.initial_md(e).get("x-request-id"), "fail-req-1")
        self.assertIsNotNone(self.rpc_line("fail-req-1"))

    def assertHostileIdReplaced(self, hostile):
        _, call = self.get_info(metadata=[("x-request-id", hostile)])
        self.assertIsNone(t.initial_md(call).get("x-request-id"), "a hostile id was echoed")
        e = self.failing_call([("x-request-id", hostile)])
        rid = dict(e.trailing_metadata()).get("x-request-id")
        self.assertTrue(t.is_uuid4(rid), rid)
        self.assertIsNotNone(self.rpc_line(rid))
        self.assertNotIn(hostile, self.srv.log())

    def test_request_id_with_spaces_is_replaced_by_generated(self):
        self.assertHostileIdReplaced("a b c")

    def test_request_id_of_500_chars_is_replaced_by_generated(self):
        self.assertHostileIdReplaced("x" * 500)

    def test_request_id_with_quotes_and_braces_is_replaced_by_generated(self):
        self.assertHostileIdReplaced('"},{"level":"error')

    def test_request_id_with_non_ascii_bytes_is_replaced_by_generated(self):
        # grpcio refuses such header values, so this goes over raw HTTP/2
        for hostile in ("réq-ü".encode("utf-8"), b"\xff\xfe-id", b"a\tb"):
            before = len(self.srv.rpc_lines("/fxb.v1.SystemService/GetInfo"))
            r = t.raw_h2_call(self.srv.addr, "/fxb.v1.SystemService/GetInfo", b"",
                              [(b"x-request-id", hostile)])
            self.assertTrue(r["end_stream"], r)
            self.assertEqual(len(r["messages"]), 1, r)
            resp = t.system_pb().GetInfoResponse.FromString(r["messages"][0])
            self.assertEqual(resp.schema_version, t.latest_schema_version())
            lines = t.wait_until(lambda: self.srv.rpc_lines(
                "/fxb.v1.SystemService/GetInfo")[before:] or None)
            self.assertTrue(lines, "no log line for the raw call")
            self.assertTrue(t.is_uuid4(lines[-1]["request_id"]), lines[-1])
            self.assertEqual(lines[-1]["code"], 0)

    def test_user_agent_is_accepted(self):
        ch = self.srv.new_channel(options=[("grpc.primary_user_agent", "fxb-app/1.2.3 (iOS 17)")])
        resp, call = self.srv.get_info(ch).with_call(t.system_pb().GetInfoRequest(), timeout=10)
        self.assertEqual(call.code(), grpc.StatusCode.OK)
        self.assertEqual(resp.schema_version, t.latest_schema_version())
        r = t.raw_h2_call(self.srv.addr, "/fxb.v1.SystemService/GetInfo", b"",
                          [(b"user-agent", b"x" * 9000)])
        self.assertEqual(len(r["messages"]), 1, r)


if __name__ == "__main__":
    t.main()
