"""grpc.reflection.v1alpha.ServerReflection over its bidi stream."""
import queue

from google.protobuf import descriptor_pb2

import fxbtest as t

ALL_SERVICES = {"fxb.v1.SystemService", "grpc.health.v1.Health",
                "grpc.reflection.v1alpha.ServerReflection", "fxb.v1.DiagService"}


def ask(srv, requests, timeout=10):
    """Sends the requests on one stream and returns the responses."""
    return list(srv.reflection()(iter(requests), timeout=timeout))


def files_of(resp):
    return [descriptor_pb2.FileDescriptorProto.FromString(b)
            for b in resp.file_descriptor_response.file_descriptor_proto]


class ReflectionTest(t.TestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.srv = t.Server().__enter__()
        cls.R = t.reflection_pb()

    @classmethod
    def tearDownClass(cls):
        cls.srv.__exit__(None, None, None)

    def test_list_services_names_every_registered_service(self):
        [resp] = ask(self.srv, [self.R.ServerReflectionRequest(list_services="")])
        self.assertEqual(resp.WhichOneof("message_response"), "list_services_response")
        names = {s.name for s in resp.list_services_response.service}
        self.assertTrue(ALL_SERVICES <= names, names)
        self.assertEqual(len(names), len(resp.list_services_response.service), "duplicates")
        self.assertEqual(resp.original_request.list_services, "")

    def test_file_containing_symbol_system_service_returns_its_file(self):
        [resp] = ask(self.srv, [self.R.ServerReflectionRequest(
            file_containing_symbol="fxb.v1.SystemService")])
        self.assertEqual(resp.WhichOneof("message_response"), "file_descriptor_response")
        files = files_of(resp)
        self.assertEqual(files[0].name, "fxb/v1/system.proto")
        self.assertEqual(files[0].package, "fxb.v1")
        [svc] = [s for s in files[0].service if s.name == "SystemService"]
        self.assertIn("GetInfo", [m.name for m in svc.method])
        self.assertEqual(resp.original_request.file_containing_symbol, "fxb.v1.SystemService")

    def test_file_containing_symbol_method_and_message(self):
        for sym, name in (("fxb.v1.SystemService.GetInfo", "fxb/v1/system.proto"),
                          ("fxb.v1.GetInfoResponse", "fxb/v1/system.proto"),
                          ("fxb.v1.DiagService", "fxb/v1/diag.proto"),
                          ("fxb.v1.EchoRequest", "fxb/v1/diag.proto"),
                          ("grpc.health.v1.HealthCheckRequest", "grpc/health/v1/health.proto")):
            [resp] = ask(self.srv, [self.R.ServerReflectionRequest(file_containing_symbol=sym)])
            self.assertEqual(resp.WhichOneof("message_response"), "file_descriptor_response", sym)
            self.assertEqual(files_of(resp)[0].name, name, sym)

    def test_file_by_filename_returns_file_and_dependencies(self):
        [resp] = ask(self.srv, [self.R.ServerReflectionRequest(
            file_by_filename="google/rpc/status.proto")])
        files = files_of(resp)
        names = [f.name for f in files]
        self.assertEqual(names[0], "google/rpc/status.proto")
        self.assertIn("google/protobuf/any.proto", names)
        self.assertEqual([m.name for m in files[0].message_type], ["Status"])

    def test_file_by_filename_health(self):
        [resp] = ask(self.srv, [self.R.ServerReflectionRequest(
            file_by_filename="grpc/health/v1/health.proto")])
        f = files_of(resp)[0]
        self.assertEqual(f.name, "grpc/health/v1/health.proto")
        self.assertEqual([s.name for s in f.service], ["Health"])

    def test_unknown_symbol_is_error_response_not_found(self):
        [resp] = ask(self.srv, [self.R.ServerReflectionRequest(
            file_containing_symbol="no.such.Symbol")])
        self.assertEqual(resp.WhichOneof("message_response"), "error_response")
        self.assertEqual(resp.error_response.error_code, 5)
        self.assertTrue(resp.error_response.error_message)

    def test_unknown_file_is_error_response_not_found(self):
        [resp] = ask(self.srv, [self.R.ServerReflectionRequest(file_by_filename="nope.proto")])
        self.assertEqual(resp.error_response.error_code, 5)

    def test_several_requests_on_one_stream_are_answered_in_order(self):
        reqs = [
            self.R.ServerReflectionRequest(list_services="*"),
            self.R.ServerReflectionRequest(file_containing_symbol="fxb.v1.SystemService"),
            self.R.ServerReflectionRequest(file_containing_symbol="no.such.Symbol"),
            self.R.ServerReflectionRequest(file_by_filename="fxb/v1/diag.proto"),
            self.R.ServerReflectionRequest(file_containing_symbol="grpc.health.v1.Health"),
        ] * 4
        resps = ask(self.srv, reqs)
        self.assertEqual(len(resps), len(reqs))
        expect = ["list_services_response", "file_descriptor_response", "error_response",
                  "file_descriptor_response", "file_descriptor_response"] * 4
        self.assertEqual([r.WhichOneof("message_response") for r in resps], expect)
        for req, resp in zip(reqs, resps):
            self.assertEqual(resp.original_request, req)
        self.assertEqual(files_of(resps[3])[0].name, "fxb/v1/diag.proto")
        self.assertEqual(files_of(resps[4])[0].name, "grpc/health/v1/health.proto")

    def test_interleaved_request_response_on_one_stream(self):
        q = queue.Queue()

        def gen():
            for sym in ("fxb.v1.SystemService", "fxb.v1.DiagService", "grpc.health.v1.Health"):
                yield self.R.ServerReflectionRequest(file_containing_symbol=sym)
                q.get(timeout=10)  # wait for the answer before sending the next

        stream = self.srv.reflection()(gen(), timeout=10)
        got = []
        for resp in stream:
            got.append(files_of(resp)[0].name)
            q.put(1)
        self.assertEqual(got, ["fxb/v1/system.proto", "fxb/v1/diag.proto",
                               "grpc/health/v1/health.proto"])


if __name__ == "__main__":
    t.main()
