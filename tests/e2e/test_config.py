"""Start-up: command line, configuration (defaults < --config FILE < env),
exit codes (0 clean, 2 bad configuration, 3 store schema mismatch) and
fxb-admin migrate."""
import os
import re
import socket
import tempfile
import time

import grpc

import fxbtest as t

# Databases of the shared test Redis that only this file uses (the
# integration tests use 14 and 15).
DB_BEHIND, DB_AHEAD, DB_MIGRATE, DB_INVALID = 9, 10, 11, 12


def flushed_db(db):
    url = t.redis_url_db(t.REDIS_URL, db)
    t.redis_cli(url, "FLUSHDB")
    return url


class CommandLineTest(t.TestCase):
    def test_help_exits_0_and_lists_the_settings(self):
        rc, out, err = t.run_server_expect_exit(["--help"])
        self.assertEqual(rc, 0, err)
        self.assertIn("usage: fxb-server", out)
        for name in ("FXB_LISTEN", "FXB_REDIS_URL", "FXB_WORKERS", "FXB_ENV", "FXB_DIAG",
                     "FXB_SHUTDOWN_GRACE_MS", "FXB_METRICS_LISTEN", "FXB_BENEFIT_ENGINE",
                     "FXB_BENEFIT_RECHECK_MS", "FXB_BENEFIT_WRITERS"):
            self.assertIn(name, out)

    def test_version_exits_0_and_prints_the_version(self):
        rc, out, err = t.run_server_expect_exit(["--version"])
        self.assertEqual(rc, 0, err)
        self.assertRegex(out.strip(), r"^fxb-server \d+\.\d+\.\d+")

    def test_unknown_argument_exits_2(self):
        rc, _, err = t.run_server_expect_exit(["--bogus"])
        self.assertEqual(rc, 2)
        self.assertIn("--bogus", err)


class BadConfigTest(t.TestCase):
    def assertExit2Naming(self, env, name, args=()):
        rc, _, err = t.run_server_expect_exit(args, extra_env=env)
        self.assertEqual(rc, 2, "exit %d, stderr: %s" % (rc, err))
        self.assertIn(name, err)
        return err

    def test_workers_abc_exits_2_naming_fxb_workers(self):
        self.assertExit2Naming({"FXB_WORKERS": "abc"}, "FXB_WORKERS")

    def test_workers_out_of_range_exits_2(self):
        self.assertExit2Naming({"FXB_WORKERS": "0"}, "FXB_WORKERS")
        self.assertExit2Naming({"FXB_WORKERS": "100000"}, "FXB_WORKERS")

    def test_listen_nonsense_exits_2(self):
        self.assertExit2Naming({"FXB_LISTEN": "nonsense"}, "FXB_LISTEN")

    def test_listen_bad_port_exits_2(self):
        self.assertExit2Naming({"FXB_LISTEN": "127.0.0.1:99999"}, "FXB_LISTEN")

    def test_production_with_diag_exits_2(self):
        err = self.assertExit2Naming({"FXB_ENV": "production", "FXB_DIAG": "1"}, "FXB_DIAG")
        self.assertIn("production", err)

    def test_bad_env_and_log_level_exit_2(self):
        self.assertExit2Naming({"FXB_ENV": "staging"}, "FXB_ENV")
        self.assertExit2Naming({"FXB_LOG_LEVEL": "verbose"}, "FXB_LOG_LEVEL")

    def test_bad_benefit_engine_settings_exit_2(self):
        self.assertExit2Naming({"FXB_BENEFIT_ENGINE": "yes"}, "FXB_BENEFIT_ENGINE")
        self.assertExit2Naming({"FXB_BENEFIT_RECHECK_MS": "999"}, "FXB_BENEFIT_RECHECK_MS")
        self.assertExit2Naming({"FXB_BENEFIT_RECHECK_MS": "86400001"}, "FXB_BENEFIT_RECHECK_MS")
        self.assertExit2Naming({"FXB_BENEFIT_WRITERS": "0"}, "FXB_BENEFIT_WRITERS")
        self.assertExit2Naming({"FXB_BENEFIT_WRITERS": "9"}, "FXB_BENEFIT_WRITERS")
        self.assertExit2Naming({"FXB_BENEFIT_WRITERS": "two"}, "FXB_BENEFIT_WRITERS")

    def test_bad_redis_url_exits_2(self):
        self.assertExit2Naming({"FXB_REDIS_URL": "http://example.invalid/"}, "FXB_REDIS_URL")

    def test_config_file_with_unknown_key_exits_2_naming_file_and_line(self):
        with tempfile.NamedTemporaryFile("w", suffix=".conf", delete=False) as f:
            f.write("# comment\nFXB_WORKERS=2\nFXB_NO_SUCH_SETTING=1\n")
        try:
            err = self.assertExit2Naming({}, "FXB_NO_SUCH_SETTING", args=["--config", f.name])
            self.assertIn(os.path.basename(f.name), err)
            self.assertIn("3", err)
        finally:
            os.unlink(f.name)

    def test_missing_config_file_exits_2(self):
        rc, _, err = t.run_server_expect_exit(["--config", "/nonexistent/fxb.conf"])
        self.assertEqual(rc, 2, err)
        self.assertIn("/nonexistent/fxb.conf", err)


class ConfigFileTest(t.TestCase):
    def write_config(self, text):
        fd, path = tempfile.mkstemp(suffix=".conf")
        with os.fdopen(fd, "w") as f:
            f.write(text)
        self.addCleanup(os.unlink, path)
        return path

    def test_config_file_sets_the_listen_port(self):
        port = t.free_port()
        path = self.write_config("# fxb test\nFXB_LISTEN=127.0.0.1:%d\n\nFXB_WORKERS=3\n" % port)
        with t.Server(args=["--config", path], extra_env={"FXB_LISTEN": None, "FXB_WORKERS": None},
                      port=port) as srv:
            resp = srv.get_info()(t.system_pb().GetInfoRequest(), timeout=5)
            self.assertEqual(resp.schema_version, t.latest_schema_version())
            line = srv.wait_log(lambda l: "listening on" in l.get("msg", ""))
            self.assertIn("port %d" % port, line["msg"])
            self.assertIn("3 workers", line["msg"])

    def test_environment_overrides_the_config_file(self):
        file_port, env_port = t.free_port(), t.free_port()
        path = self.write_config("FXB_LISTEN=127.0.0.1:%d\nFXB_WORKERS=3\n" % file_port)
        with t.Server(args=["--config=%s" % path],
                      extra_env={"FXB_LISTEN": "127.0.0.1:%d" % env_port,
                                 "FXB_WORKERS": "1"}) as srv:
            self.assertEqual(srv.port, env_port)
            srv.get_info()(t.system_pb().GetInfoRequest(), timeout=5)
            with self.assertRaises(OSError):
                socket.create_connection(("127.0.0.1", file_port), timeout=1).close()
            line = srv.wait_log(lambda l: "listening on" in l.get("msg", ""))
            self.assertIn("1 workers", line["msg"])


class SchemaTest(t.TestCase):
    def test_store_behind_exits_3_and_says_to_run_migrate(self):
        url = flushed_db(DB_BEHIND)
        rc, _, err = t.run_server_expect_exit(redis_url=url)
        self.assertEqual(rc, 3, err)
        self.assertIn("fxb-admin migrate", err)

    def test_store_ahead_exits_3(self):
        url = flushed_db(DB_AHEAD)
        t.redis_cli(url, "SET", "fxb:schema:version", str(t.latest_schema_version() + 1))
        rc, _, err = t.run_server_expect_exit(redis_url=url)
        self.assertEqual(rc, 3, err)
        self.assertIn(str(t.latest_schema_version() + 1), err)
        self.assertIn("upgrade", err)
        # fxb-admin refuses to migrate it and says so in --status
        r = t.run_admin(["migrate"], redis_url=url)
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        st = t.run_admin(["migrate", "--status"], redis_url=url, check=True).stdout
        self.assertIn("AHEAD", st)

    def test_store_with_garbage_version_exits_3(self):
        url = flushed_db(DB_INVALID)
        t.redis_cli(url, "SET", "fxb:schema:version", "banana")
        rc, _, err = t.run_server_expect_exit(redis_url=url)
        self.assertEqual(rc, 3, err)
        self.assertIn("fxb:schema:version", err)

    def test_migrate_twice_is_idempotent_and_status_shows_versions(self):
        url = flushed_db(DB_MIGRATE)
        latest = t.latest_schema_version()
        st = t.run_admin(["migrate", "--status"], redis_url=url, check=True).stdout
        self.assertRegex(st, r"applied schema version:\s*0\b")
        self.assertRegex(st, r"known schema version:\s*%d\b" % latest)
        self.assertIn("pending", st)

        first = t.run_admin(["migrate"], redis_url=url, check=True).stdout
        self.assertIn("applied", first)
        self.assertIn("schema at version %d" % latest, first)
        keys_after_first = sorted(t.redis_cli(url, "KEYS", "*").split())
        version_after_first = t.redis_cli(url, "GET", "fxb:schema:version")
        self.assertEqual(version_after_first, str(latest))

        second = t.run_admin(["migrate"], redis_url=url, check=True).stdout
        self.assertNotRegex(second, r"(?m)^applied ")
        self.assertIn("schema at version %d" % latest, second)
        self.assertEqual(sorted(t.redis_cli(url, "KEYS", "*").split()), keys_after_first)
        self.assertEqual(t.redis_cli(url, "GET", "fxb:schema:version"), str(latest))

        st = t.run_admin(["migrate", "--status"], redis_url=url, check=True).stdout
        self.assertRegex(st, r"applied schema version:\s*%d\b" % latest)
        self.assertNotIn("pending", st)
        self.assertGreaterEqual(len(re.findall(r"(?m)^\s+\d{4} \S+\s+applied$", st)), 1)

        # and a server starts on it
        with t.Server(redis_url=url, migrate=False) as srv:
            resp = srv.get_info()(t.system_pb().GetInfoRequest(), timeout=5)
            self.assertEqual(resp.schema_version, latest)


class ProductionTest(t.TestCase):
    def test_production_runs_without_diag_service(self):
        with t.Server(extra_env={"FXB_ENV": "production"}) as srv:
            R = t.reflection_pb()
            [resp] = list(srv.reflection()(iter([R.ServerReflectionRequest(list_services="")]),
                                           timeout=5))
            names = {s.name for s in resp.list_services_response.service}
            self.assertTrue({"fxb.v1.SystemService", "grpc.health.v1.Health",
                             "grpc.reflection.v1alpha.ServerReflection"} <= names, names)
            self.assertNotIn("fxb.v1.DiagService", names)
            self.assertCallFails(lambda: srv.echo()(t.diag_pb().EchoRequest(text="x"), timeout=5),
                                 grpc.StatusCode.UNIMPLEMENTED, "UNKNOWN_METHOD")
            self.assertCallFails(
                lambda: srv.health_check()(
                    t.health_pb().HealthCheckRequest(service="fxb.v1.DiagService"), timeout=5),
                grpc.StatusCode.NOT_FOUND, "UNKNOWN_SERVICE")
            line = srv.wait_log(lambda l: "listening on" in l.get("msg", ""))
            self.assertIn("env production", line["msg"])

    def test_production_with_diag_0_runs(self):
        with t.Server(extra_env={"FXB_ENV": "production", "FXB_DIAG": "0"}) as srv:
            srv.get_info()(t.system_pb().GetInfoRequest(), timeout=5)

    def sync_engine(self, srv):
        d = t.diag_pb()
        return srv.unary("/fxb.v1.DiagService/SyncBenefitEngine", d.SyncBenefitEngineRequest,
                         d.SyncBenefitEngineResponse)(
            d.SyncBenefitEngineRequest(timeout_ms=20000), timeout=30)

    def test_benefit_engine_runs_by_default_and_not_with_0(self):
        # a private Redis: the engine's lease is per Redis, and other tests'
        # servers on the shared one may hold it
        with t.Redis() as redis:
            with t.Server(redis_url=redis.url) as srv:
                deadline = time.monotonic() + 10
                while True:
                    try:
                        resp = self.sync_engine(srv)
                        break
                    except grpc.RpcError as e:
                        # the lease is taken moments after start
                        if t.error_reason(e)[1] != "ENGINE_NOT_LEADER" or \
                                time.monotonic() > deadline:
                            raise
                        time.sleep(0.1)
                self.assertTrue(resp.leader)
            with t.Server(redis_url=redis.url,
                          extra_env={"FXB_BENEFIT_ENGINE": "0"}) as srv:
                self.assertCallFails(lambda: self.sync_engine(srv),
                                     grpc.StatusCode.FAILED_PRECONDITION, "ENGINE_NOT_LEADER")
                # the first server gave its lease back when it stopped
                self.assertEqual(
                    t.redis_cli(redis.url, "EXISTS", "fxb:benefit:engine:leader"), "0")

    def test_development_with_diag_0_has_no_diag_service(self):
        with t.Server(extra_env={"FXB_DIAG": "0"}) as srv:
            self.assertCallFails(lambda: srv.echo()(t.diag_pb().EchoRequest(text="x"), timeout=5),
                                 grpc.StatusCode.UNIMPLEMENTED)


if __name__ == "__main__":
    t.main()
