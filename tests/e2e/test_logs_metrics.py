"""One JSON log line per RPC, and the Prometheus metrics endpoint."""
import json
import time
import urllib.request

import grpc

import fxbtest as t

GETINFO = "/fxb.v1.SystemService/GetInfo"
CHECK = "/grpc.health.v1.Health/Check"
ECHO = "/fxb.v1.DiagService/Echo"
TICKS = "/fxb.v1.DiagService/Ticks"


class LogsTest(t.TestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.srv = t.Server().__enter__()

    @classmethod
    def tearDownClass(cls):
        cls.srv.__exit__(None, None, None)

    def test_every_log_line_is_one_json_object(self):
        self.srv.get_info()(t.system_pb().GetInfoRequest(), timeout=5)
        lines = [l for l in self.srv.log().splitlines() if l.strip()]
        self.assertTrue(lines)
        for line in lines:
            obj = json.loads(line)  # raises on a non-JSON line
            self.assertIsInstance(obj, dict)
            self.assertRegex(obj["time"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
            self.assertIn(obj["level"], ("debug", "info", "warn", "error"))
            self.assertIn("msg", obj)

    def test_each_rpc_produces_one_log_line_with_all_fields(self):
        S, D, H = t.system_pb(), t.diag_pb(), t.health_pb()
        calls = [
            ("log-ok-1", lambda md: self.srv.get_info()(S.GetInfoRequest(), metadata=md,
                                                        timeout=5), GETINFO, 0),
            ("log-nf-1", lambda md: self.srv.health_check()(
                H.HealthCheckRequest(service="nope"), metadata=md, timeout=5), CHECK, 5),
            ("log-ia-1", lambda md: self.srv.echo()(D.EchoRequest(sleep_ms=99999), metadata=md,
                                                    timeout=5), ECHO, 3),
            ("log-st-1", lambda md: list(self.srv.ticks()(D.TicksRequest(count=3), metadata=md,
                                                          timeout=5)), TICKS, 0),
        ]
        for rid, fn, _, _ in calls:
            try:
                fn([("x-request-id", rid)])
            except grpc.RpcError:
                pass
        for rid, _, method, code in calls:
            line = self.srv.wait_log(lambda l: l.get("request_id") == rid)
            self.assertIsNotNone(line, rid)
            matching = [l for l in self.srv.log_lines() if l.get("request_id") == rid]
            self.assertEqual(len(matching), 1, matching)
            self.assertEqual(line["msg"], "rpc")
            self.assertEqual(line["method"], method)
            self.assertEqual(line["code"], code)
            self.assertEqual(line["status"], t.CODE_BY_VALUE[code].name)
            self.assertIsInstance(line["duration_us"], int)
            self.assertGreaterEqual(line["duration_us"], 0)
            self.assertLess(line["duration_us"], 5 * 1000 * 1000)
            self.assertRegex(line["peer"], r"^ipv4:127\.0\.0\.1:\d+$")
            self.assertIn(line["level"], ("info", "warn"))
            self.assertRegex(line["time"], r"^\d{4}-\d\d-\d\dT")
        nf = [l for l in self.srv.log_lines() if l.get("request_id") == "log-nf-1"][0]
        self.assertEqual(nf.get("reason"), "UNKNOWN_SERVICE")

    def test_unknown_method_path_is_logged_sanitised(self):
        try:
            self.srv.channel.unary_unary('/evil.Svc/M"x')(b"", timeout=5,
                                                          metadata=[("x-request-id", "log-evil")])
        except grpc.RpcError as e:
            self.assertEqual(e.code(), grpc.StatusCode.UNIMPLEMENTED)
        line = self.srv.wait_log(lambda l: l.get("request_id") == "log-evil")
        self.assertIsNotNone(line)
        self.assertEqual(line["status"], "UNIMPLEMENTED")
        self.assertTrue(line["method"].startswith("/evil.Svc/M"), line)
        self.assertNotIn('"', line["method"])


class LogLevelTest(t.TestCase):
    def test_log_level_warn_drops_ok_rpc_lines(self):
        with t.Server(extra_env={"FXB_LOG_LEVEL": "warn"}) as srv:
            srv.get_info()(t.system_pb().GetInfoRequest(), timeout=5,
                           metadata=[("x-request-id", "quiet-1")])
            time.sleep(0.2)
            self.assertEqual([l for l in srv.log_lines() if l.get("request_id") == "quiet-1"],
                             [])


class MetricsTest(t.TestCase):
    def test_rpc_total_counts_match_the_calls_made(self):
        S, D, H = t.system_pb(), t.diag_pb(), t.health_pb()
        with t.Server() as srv:
            # the start-up health check is counted once its reply batch is done
            t.wait_until(lambda: t.metric(srv.metrics(), "fxb_rpc_in_flight") == 0, timeout=5)
            before = srv.metrics()
            for _ in range(3):
                srv.get_info()(S.GetInfoRequest(), timeout=5)
            for _ in range(2):
                with self.assertRaises(grpc.RpcError):
                    srv.health_check()(H.HealthCheckRequest(service="nope"), timeout=5)
            with self.assertRaises(grpc.RpcError):
                srv.echo()(D.EchoRequest(sleep_ms=40000), timeout=5)
            with self.assertRaises(grpc.RpcError):
                srv.channel.unary_unary("/no.Such/Method")(b"", timeout=5)
            list(srv.ticks()(D.TicksRequest(count=2), timeout=5))
            # a call is counted when its reply batch completes on the server,
            # which may be just after the client has the reply
            t.wait_until(lambda: t.metric(srv.metrics(), "fxb_rpc_in_flight") == 0, timeout=5)
            after = srv.metrics()

            def delta(method, code):
                return (t.metric(after, "fxb_rpc_total", method=method, code=code) -
                        t.metric(before, "fxb_rpc_total", method=method, code=code))

            self.assertEqual(delta(GETINFO, "OK"), 3)
            self.assertEqual(delta(CHECK, "NOT_FOUND"), 2)
            self.assertEqual(delta(CHECK, "OK"), 0)
            self.assertEqual(delta(ECHO, "INVALID_ARGUMENT"), 1)
            self.assertEqual(delta("unknown", "UNIMPLEMENTED"), 1)
            self.assertEqual(delta(TICKS, "OK"), 1)
            # every series is a known method (or "unknown") and a code name
            names = {c.name for c in grpc.StatusCode}
            for (name, labels), v in after.items():
                if name == "fxb_rpc_total":
                    d = dict(labels)
                    self.assertEqual(set(d), {"method", "code"})
                    self.assertIn(d["code"], names)
                    self.assertTrue(d["method"] == "unknown" or d["method"].startswith("/"), d)
                    self.assertGreater(v, 0)

            # the histogram agrees with the counters
            for method in (GETINFO, CHECK, ECHO, TICKS, "unknown"):
                total = sum(v for (name, labels), v in after.items()
                            if name == "fxb_rpc_total" and dict(labels)["method"] == method)
                buckets = sorted(
                    ((float("inf") if dict(l)["le"] == "+Inf" else float(dict(l)["le"])), v)
                    for (name, l), v in after.items()
                    if name == "fxb_rpc_duration_seconds_bucket" and dict(l)["method"] == method)
                self.assertEqual(len(buckets), 17, method)
                counts = [v for _, v in buckets]
                self.assertEqual(counts, sorted(counts), "buckets not cumulative: %s" % method)
                self.assertEqual(buckets[-1], (float("inf"), total))
                self.assertEqual(t.metric(after, "fxb_rpc_duration_seconds_count",
                                          method=method), total)
                self.assertGreaterEqual(t.metric(after, "fxb_rpc_duration_seconds_sum",
                                                 method=method), 0)
            # GetInfo does a Redis round trip: some time was spent
            self.assertGreater(t.metric(after, "fxb_rpc_duration_seconds_sum", method=GETINFO), 0)
            self.assertEqual(t.metric(after, "fxb_rpc_in_flight"), 0)
            self.assertIn(("fxb_redis_errors_total", frozenset()), after)

    def test_in_flight_counts_open_calls(self):
        D = t.diag_pb()
        with t.Server() as srv:
            # the harness's own start-up calls end on the server a moment
            # after their answers reached the client
            self.assertTrue(t.wait_until(
                lambda: t.metric(srv.metrics(), "fxb_rpc_in_flight") == 0, timeout=5))
            streams = [srv.ticks()(D.TicksRequest(count=100, interval_ms=1000), timeout=30)
                       for _ in range(3)]
            for s in streams:
                self.assertEqual(next(s).seq, 1)
            self.assertEqual(t.metric(srv.metrics(), "fxb_rpc_in_flight"), 3)
            for s in streams:
                s.cancel()
            self.assertTrue(t.wait_until(
                lambda: t.metric(srv.metrics(), "fxb_rpc_in_flight") == 0, timeout=5))
            m = srv.metrics()
            self.assertEqual(t.metric(m, "fxb_rpc_total", method=TICKS, code="CANCELLED"), 3)

    def test_metrics_endpoint_http_behaviour(self):
        with t.Server() as srv:
            with urllib.request.urlopen(srv.metrics_url + "/metrics", timeout=5) as r:
                self.assertEqual(r.status, 200)
                ctype = r.headers.get("Content-Type")
                body = r.read().decode()
            self.assertIn("text/plain", ctype)
            self.assertIn("version=0.0.4", ctype)
            for name in ("fxb_rpc_total", "fxb_rpc_duration_seconds", "fxb_rpc_in_flight",
                         "fxb_redis_errors_total"):
                self.assertRegex(body, r"# TYPE %s (counter|histogram|gauge)" % name)
            self.assertTrue(body.endswith("\n"))
            status, _ = t.http_get(srv.metrics_url + "/other")
            self.assertEqual(status, 404)
            status, _ = t.http_get(srv.metrics_url + "/")
            self.assertEqual(status, 404)
            req = urllib.request.Request(srv.metrics_url + "/metrics", data=b"x", method="POST")
            try:
                urllib.request.urlopen(req, timeout=5)
                self.fail("POST /metrics accepted")
            except urllib.error.HTTPError as e:
                self.assertEqual(e.code, 405)

    def test_metrics_off_starts_without_listener(self):
        with t.Server(extra_env={"FXB_METRICS_LISTEN": "off"}) as srv:
            srv.get_info()(t.system_pb().GetInfoRequest(), timeout=5)
            self.assertEqual([l for l in srv.log_lines() if l["level"] in ("warn", "error")], [])


if __name__ == "__main__":
    t.main()
