#!/usr/bin/python3
"""Signs in N distinct accounts on a development fxb-server and writes their
access tokens, one a line, to a file: the live tokens that bench/auth_run.sh
rotates through.

For each account: SendCode to a unique phone number, the code read back from
the development SMS sink (the Redis stream fxb:dev:sms, fields phone and
text), then SignInWithCode with a device of its own. The calls go in batches,
concurrently within a batch.

The server must run with FXB_ENV=development (the dev SMS sink), and with
daily code caps that allow N codes from one address: FXB_OTP_DAILY_IP >= N
(at most 100000) and FXB_OTP_DAILY_PHONE >= 1.

Usage: auth_signin.py --target HOST:PORT --redis-url redis://HOST:PORT[/DB]
                      --py-dir BUILD/py --out FILE [-n 1000] [--batch 50]

--py-dir holds the modules protoc --python_out generated from proto/
(fxb/v1/auth_pb2.py); they are loaded by file path, as tests/e2e/fxbtest.py
does, so they cannot clash with the installed grpc and google packages.
Needs /usr/bin/python3 with grpcio and protobuf; Redis is spoken to directly
(RESP over a socket), so no Redis module is needed. Prints no token.
"""
import argparse
import importlib.util
import os
import random
import re
import socket
import sys
import time
import urllib.parse

import grpc

SMS_STREAM = "fxb:dev:sms"
CODE_RE = re.compile(r"验证码(\d{6})")


def load_module(py_dir, name):
    path = os.path.join(py_dir, name + "_pb2.py")
    if not os.path.exists(path):
        sys.exit("auth_signin: %s missing (generate it with protoc --python_out)" % path)
    modname = "fxbbench_" + re.sub(r"[^A-Za-z0-9]", "_", name)
    spec = importlib.util.spec_from_file_location(modname, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[modname] = mod
    spec.loader.exec_module(mod)
    return mod


class Redis:
    """The few commands needed, over RESP2."""

    def __init__(self, url):
        u = urllib.parse.urlparse(url)
        if u.scheme != "redis":
            sys.exit("auth_signin: only redis:// URLs are supported (got %r)" % url)
        self.sock = socket.create_connection((u.hostname or "127.0.0.1", u.port or 6379), timeout=10)
        self.buf = self.sock.makefile("rb")
        if u.password:
            args = ["AUTH", u.password] if not u.username else ["AUTH", u.username, u.password]
            self.cmd(*args)
        db = (u.path or "/").lstrip("/")
        if db and db != "0":
            self.cmd("SELECT", db)

    def cmd(self, *args):
        out = [b"*%d\r\n" % len(args)]
        for a in args:
            a = a if isinstance(a, bytes) else str(a).encode()
            out.append(b"$%d\r\n%s\r\n" % (len(a), a))
        self.sock.sendall(b"".join(out))
        return self._reply()

    def _reply(self):
        line = self.buf.readline()
        if not line.endswith(b"\r\n"):
            raise ConnectionError("redis: connection closed")
        kind, rest = line[:1], line[1:-2]
        if kind == b"+":
            return rest
        if kind == b"-":
            raise RuntimeError("redis: " + rest.decode(errors="replace"))
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            if n < 0:
                return None
            data = self.buf.read(n + 2)
            return data[:-2]
        if kind == b"*":
            n = int(rest)
            return None if n < 0 else [self._reply() for _ in range(n)]
        raise RuntimeError("redis: unexpected reply %r" % line)

    def close(self):
        self.buf.close()
        self.sock.close()


def latest_codes(redis, phones, count):
    """{phone: code} from the newest entries of the SMS stream."""
    want = set(phones)
    found = {}
    entries = redis.cmd("XREVRANGE", SMS_STREAM, "+", "-", "COUNT", count) or []
    for _id, fields in entries:
        kv = dict(zip(fields[0::2], fields[1::2]))
        phone = kv.get(b"phone", b"").decode()
        if phone in want and phone not in found:
            m = CODE_RE.search(kv.get(b"text", b"").decode("utf-8", errors="replace"))
            if m:
                found[phone] = m.group(1)
    return found


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--target", required=True)
    ap.add_argument("--redis-url", required=True)
    ap.add_argument("--py-dir", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("-n", type=int, default=1000)
    ap.add_argument("--batch", type=int, default=50)
    ap.add_argument("--timeout", type=float, default=30.0, help="seconds per RPC")
    a = ap.parse_args()
    if not 1 <= a.n <= 100000 or not 1 <= a.batch <= 500:
        sys.exit("auth_signin: -n must be 1..100000 and --batch 1..500")

    auth = load_module(a.py_dir, "fxb/v1/auth")
    channel = grpc.insecure_channel(a.target)
    grpc.channel_ready_future(channel).result(timeout=a.timeout)
    send_code = channel.unary_unary(
        "/fxb.v1.AuthService/SendCode",
        request_serializer=auth.SendCodeRequest.SerializeToString,
        response_deserializer=auth.SendCodeResponse.FromString)
    sign_in = channel.unary_unary(
        "/fxb.v1.AuthService/SignInWithCode",
        request_serializer=auth.SignInWithCodeRequest.SerializeToString,
        response_deserializer=auth.TokenResponse.FromString)
    redis = Redis(a.redis_url)

    # Unique numbers 139xxxxxxxx from a random start, so that a rerun against
    # the same Redis does not hit the 60 s resend limit of the last run.
    start = random.randrange(0, 10 ** 8 - a.n)
    phones = ["139%08d" % (start + i) for i in range(a.n)]
    tokens = []
    t0 = time.monotonic()
    created = 0
    for b in range(0, a.n, a.batch):
        batch = phones[b:b + a.batch]
        futs = [send_code.future(auth.SendCodeRequest(phone=p, purpose=auth.CODE_PURPOSE_SIGN_IN),
                                 timeout=a.timeout) for p in batch]
        for p, f in zip(batch, futs):
            try:
                f.result()
            except grpc.RpcError as e:
                sys.exit("auth_signin: SendCode(%s...) failed: %s %s" %
                         (p[:3], e.code().name, e.details()))
        codes = latest_codes(redis, batch, 4 * len(batch))
        missing = [p for p in batch if p not in codes]
        if missing:
            sys.exit("auth_signin: no code in %s for %d of %d numbers (is the server in "
                     "development with FXB_SMS=dev or auto, on this Redis?)" %
                     (SMS_STREAM, len(missing), len(batch)))
        futs = []
        for i, p in enumerate(batch):
            dev = auth.Device(device_id="bench-dev-%06d" % (b + i), name="fxb bench")
            futs.append(sign_in.future(
                auth.SignInWithCodeRequest(phone=p, code=codes[p], device=dev), timeout=a.timeout))
        for p, f in zip(batch, futs):
            try:
                r = f.result()
            except grpc.RpcError as e:
                sys.exit("auth_signin: SignInWithCode(%s...) failed: %s %s" %
                         (p[:3], e.code().name, e.details()))
            if not r.access_token:
                sys.exit("auth_signin: SignInWithCode returned no access token")
            created += 1 if r.account_created else 0
            tokens.append(r.access_token)
    elapsed = time.monotonic() - t0
    redis.close()
    channel.close()

    if len(set(tokens)) != len(tokens):
        sys.exit("auth_signin: duplicate access tokens")
    tmp = a.out + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write("\n".join(tokens) + "\n")
    os.replace(tmp, a.out)
    print("auth_signin: %d accounts signed in (%d created) in %.1f s, %d distinct tokens -> %s" %
          (len(tokens), created, elapsed, len(set(tokens)), a.out))


if __name__ == "__main__":
    main()
