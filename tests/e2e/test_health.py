"""grpc.health.v1.Health: Check, Watch, and how both follow Redis going away
and coming back, and the server shutting down."""
import queue
import threading
import time

import grpc

import fxbtest as t


class Watcher:
    """Reads a Health/Watch stream on a thread; statuses (ints) and the final
    RpcError (or "END" for a clean end) go to a queue."""

    def __init__(self, srv, service=""):
        self.q = queue.Queue()
        self.call = srv.health_watch()(t.health_pb().HealthCheckRequest(service=service))
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        try:
            for resp in self.call:
                self.q.put(resp.status)
            self.q.put("END")
        except grpc.RpcError as e:
            self.q.put(e)

    def next(self, timeout=10):
        try:
            return self.q.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError("no Watch event within %ss" % timeout)

    def wait_for(self, status, timeout=10):
        """Waits for status; returns the events seen before it."""
        seen = []
        deadline = time.monotonic() + timeout
        while True:
            ev = self.next(max(0.01, deadline - time.monotonic()))
            if ev == status:
                return seen
            if not isinstance(ev, int):
                raise AssertionError("Watch ended with %r before %r (seen %r)" %
                                     (ev, status, seen))
            seen.append(ev)

    def cancel(self):
        self.call.cancel()
        self.thread.join(5)


class HealthTest(t.TestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.srv = t.Server().__enter__()

    @classmethod
    def tearDownClass(cls):
        cls.srv.__exit__(None, None, None)

    def test_check_empty_service_is_serving(self):
        r = self.srv.health_check()(t.health_pb().HealthCheckRequest(service=""), timeout=5)
        self.assertEqual(r.status, t.SERVING)

    def test_check_each_registered_service_is_serving(self):
        for name in ("fxb.v1.SystemService", "grpc.health.v1.Health",
                     "grpc.reflection.v1alpha.ServerReflection", "fxb.v1.DiagService"):
            r = self.srv.health_check()(t.health_pb().HealthCheckRequest(service=name), timeout=5)
            self.assertEqual(r.status, t.SERVING, name)

    def test_check_unknown_service_is_not_found(self):
        self.assertCallFails(
            lambda: self.srv.health_check()(
                t.health_pb().HealthCheckRequest(service="no.such.Service"), timeout=5),
            grpc.StatusCode.NOT_FOUND, "UNKNOWN_SERVICE")

    def test_watch_gets_serving_first(self):
        w = Watcher(self.srv)
        try:
            self.assertEqual(w.next(), t.SERVING)
        finally:
            w.cancel()

    def test_watch_unknown_service_gets_service_unknown_and_stays_open(self):
        w = Watcher(self.srv, "no.such.Service")
        try:
            self.assertEqual(w.next(), t.SERVICE_UNKNOWN)
            self.assertRaises(AssertionError, w.next, 0.3)  # nothing else, still open
        finally:
            w.cancel()


class HealthFollowsRedisTest(t.TestCase):
    """A private Redis that the test stops and starts again."""

    def test_redis_down_then_back_flips_check_watch_and_store_calls(self):
        D = t.diag_pb()
        with t.Redis() as redis:
            redis.migrate()
            with t.Server(redis_url=redis.url,
                          extra_env={"FXB_REDIS_CONNECT_TIMEOUT_MS": "200",
                                     "FXB_REDIS_COMMAND_TIMEOUT_MS": "500"}) as srv:
                check = srv.health_check()
                req = t.health_pb().HealthCheckRequest()
                touch = D.EchoRequest(text="t", touch_store=True)
                w = Watcher(srv)
                self.assertEqual(w.next(), t.SERVING)
                self.assertEqual(srv.echo()(touch, timeout=5).text, "t")
                errors_before = t.metric(srv.metrics(), "fxb_redis_errors_total")

                redis.stop()
                t0 = time.monotonic()
                got = t.wait_until(lambda: check(req, timeout=5).status == t.NOT_SERVING,
                                   timeout=5)
                self.assertTrue(got, "Check still SERVING 5 s after Redis stopped")
                self.assertLess(time.monotonic() - t0, 5)
                self.assertEqual(w.wait_for(t.NOT_SERVING, timeout=5), [])

                # a call that needs the store fails retryably, with details
                err = self.assertCallFails(lambda: srv.echo()(touch, timeout=5),
                                           grpc.StatusCode.UNAVAILABLE, "STORE_UNAVAILABLE")
                _, loc = t.decode_status_details(err)
                self.assertEqual(loc.locale, "zh-CN")
                self.assertTrue(any(ord(c) > 0x2e80 for c in loc.message), loc.message)
                # GetInfo needs no store: it keeps answering while Redis is down
                resp = srv.get_info()(t.system_pb().GetInfoRequest(), timeout=5)
                self.assertEqual(resp.schema_version, t.latest_schema_version())
                errors_down = t.metric(srv.metrics(), "fxb_redis_errors_total")
                self.assertGreater(errors_down, errors_before)

                redis.start()
                got = t.wait_until(lambda: check(req, timeout=5).status == t.SERVING,
                                   timeout=8)
                self.assertTrue(got, "Check not SERVING 8 s after Redis returned")
                self.assertEqual(w.wait_for(t.SERVING, timeout=5), [])

                def touch_ok():
                    try:
                        return srv.echo()(touch, timeout=5)
                    except grpc.RpcError as e:
                        if e.code() != grpc.StatusCode.UNAVAILABLE:
                            raise
                        return None
                # each worker reconnects on its own backoff (at most 2 s)
                for _ in range(6):
                    resp = t.wait_until(touch_ok, timeout=8, interval=0.2)
                    self.assertIsNotNone(resp, "store calls still failing 8 s after Redis "
                                         "returned")
                    self.assertGreater(resp.store_round_trip_us, 0)
                self.assertGreaterEqual(t.metric(srv.metrics(), "fxb_redis_errors_total"),
                                        errors_down)
                w.cancel()

    def test_schema_changed_under_a_running_server_is_not_serving(self):
        with t.Redis() as redis:
            redis.migrate()
            latest = t.latest_schema_version()
            with t.Server(redis_url=redis.url) as srv:
                check = srv.health_check()
                req = t.health_pb().HealthCheckRequest()
                w = Watcher(srv)
                self.assertEqual(w.next(), t.SERVING)
                t.redis_cli(redis.url, "SET", "fxb:schema:version", str(latest + 1))
                self.assertTrue(t.wait_until(
                    lambda: check(req, timeout=5).status == t.NOT_SERVING, timeout=5),
                    "Check still SERVING with the store schema ahead")
                self.assertEqual(w.wait_for(t.NOT_SERVING, timeout=5), [])
                line = srv.wait_log(lambda l: l["level"] == "error" and
                                    "upgrade" in l.get("msg", ""))
                self.assertIsNotNone(line, "schema mismatch not logged as an error")
                t.redis_cli(redis.url, "SET", "fxb:schema:version", str(latest))
                self.assertTrue(t.wait_until(
                    lambda: check(req, timeout=5).status == t.SERVING, timeout=5))
                self.assertEqual(w.wait_for(t.SERVING, timeout=5), [])
                w.cancel()


class HealthShutdownTest(t.TestCase):
    def test_sigterm_sends_not_serving_to_watch_and_ends_it_unavailable(self):
        with t.Server() as srv:
            w = Watcher(srv)
            self.assertEqual(w.next(), t.SERVING)
            unknown = Watcher(srv, "no.such.Service")
            self.assertEqual(unknown.next(), t.SERVICE_UNKNOWN)
            srv.send_signal()
            self.assertEqual(w.next(), t.NOT_SERVING)
            end = w.next()
            self.assertIsInstance(end, grpc.RpcError, end)
            self.assertRpcError(end, grpc.StatusCode.UNAVAILABLE, "SHUTTING_DOWN")
            end = unknown.next()
            self.assertIsInstance(end, grpc.RpcError, end)
            self.assertRpcError(end, grpc.StatusCode.UNAVAILABLE, "SHUTTING_DOWN")
            rc = srv.wait(20)
            srv.expect_exit = rc
            self.assertExitCode(srv, rc, 0)


if __name__ == "__main__":
    t.main()
