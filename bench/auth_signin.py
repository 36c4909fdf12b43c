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
                      [--delegated-out FILE [--delegated K] [--grants-out FILE]]

--delegated-out: after the sign-ins, K delegated tokens (default n/2, at
most n/2), one per pair principal = account 2i, agent = account 2i+1, one a
line. For each pair: the agent's stored assurance level set to 2 in Redis
(HSET {u:<id>}:account level 2, as tests/e2e/fxbtest.py set_level does) and
AuthService/Refresh for an access token with acr 2; an active grant of scope
"inbox.read" written straight into Redis in the layout of auth/grant.h
({g:<gid>}:grant, valid from now - 60 s to now + 1 day, PEXPIREAT one day
after that; this skips OfferGrant/AcceptGrant, which need L3 and identity
verification); then the real ProxyService/ExchangeToken with the agent's
token. A delegated token lives at most 600 s (FXB_GRANT_TOKEN_TTL_S) from
its exchange. --grants-out FILE: "<grant id> <token expires_at_ms>" a line,
in the same order.

--py-dir holds the modules protoc --python_out generated from proto/
(fxb/v1/auth_pb2.py, and fxb/v1/proxy_pb2.py for --delegated-out); they are
loaded by file path, as tests/e2e/fxbtest.py does, so they cannot clash with
the installed grpc and google packages.
Needs /usr/bin/python3 with grpcio and protobuf; Redis is spoken to directly
(RESP over a socket), so no Redis module is needed. Prints no token.
"""
import argparse
import base64
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

    def pipeline(self, cmds):
        """Sends every command, then reads every reply (errors raise)."""
        out = []
        for args in cmds:
            out.append(b"*%d\r\n" % len(args))
            for a in args:
                a = a if isinstance(a, bytes) else str(a).encode()
                out.append(b"$%d\r\n%s\r\n" % (len(a), a))
        self.sock.sendall(b"".join(out))
        return [self._reply() for _ in cmds]

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


GRANT_SCOPE = "inbox.read"  # what DiagService/ProbeDelegated requires
DAY_MS = 24 * 3600 * 1000


def new_gid(seen):
    """22 characters of [A-Za-z0-9_-] (16 random bytes, as fxb_token_new_id)."""
    while True:
        gid = base64.urlsafe_b64encode(os.urandom(16)).rstrip(b"=").decode()
        if gid not in seen:
            seen.add(gid)
            return gid


def write_grants(redis, pairs, seen):
    """An active grant per (principal, agent) account-id pair, in the layout
    of auth/grant.h; returns the grant ids."""
    now = int(time.time() * 1000)
    valid_until = now + DAY_MS
    gids, cmds = [], []
    for principal, agent in pairs:
        gid = new_gid(seen)
        key = "{g:%s}:grant" % gid
        cmds.append(["HSET", key,
                     "principal", principal, "principal_kind", "person",
                     "principal_label", "bench", "agent", agent, "agent_label", "bench",
                     "scope", GRANT_SCOPE, "purpose", "bench", "status", "active",
                     "initiated_by", "principal", "created_at_ms", now,
                     "valid_from_ms", now - 60000, "valid_until_ms", valid_until,
                     "pending_until_ms", 0, "notify_activity", 0])
        # ended grants keep their record 15 months; a live one expires a day
        # after its end here (the activity stream copies the record's expiry)
        cmds.append(["PEXPIREAT", key, valid_until + DAY_MS])
        gids.append(gid)
    redis.pipeline(cmds)
    return gids


def delegate(a, channel, redis, auth, accounts):
    """Delegated tokens for pairs (accounts[2i], accounts[2i+1]); accounts
    are (access token, refresh token, account id). Returns [(token, gid,
    expires_at_ms)]."""
    proxy = load_module(a.py_dir, "fxb/v1/proxy")
    refresh = channel.unary_unary(
        "/fxb.v1.AuthService/Refresh",
        request_serializer=auth.RefreshRequest.SerializeToString,
        response_deserializer=auth.TokenResponse.FromString)
    exchange = channel.unary_unary(
        "/fxb.v1.ProxyService/ExchangeToken",
        request_serializer=proxy.ExchangeTokenRequest.SerializeToString,
        response_deserializer=proxy.ExchangeTokenResponse.FromString)
    pairs = [(accounts[2 * i], accounts[2 * i + 1]) for i in range(a.delegated)]
    out, seen = [], set()
    for b in range(0, len(pairs), a.batch):
        batch = pairs[b:b + a.batch]
        # the agent at level 2 (real name), then a token that says so
        redis.pipeline([["HSET", "{u:%s}:account" % ag[2], "level", 2] for _, ag in batch])
        futs = [refresh.future(auth.RefreshRequest(refresh_token=ag[1]), timeout=a.timeout)
                for _, ag in batch]
        agent_tokens = []
        for f in futs:
            try:
                r = f.result()
            except grpc.RpcError as e:
                sys.exit("auth_signin: Refresh failed: %s %s" % (e.code().name, e.details()))
            if not r.access_token or r.account.assurance_level not in (0, 2):
                sys.exit("auth_signin: Refresh gave no acr 2 token (level %d)" %
                         r.account.assurance_level)
            agent_tokens.append(r.access_token)
        gids = write_grants(redis, [(pr[2], ag[2]) for pr, ag in batch], seen)
        futs = [exchange.future(proxy.ExchangeTokenRequest(grant_id=gid), timeout=a.timeout,
                                metadata=(("authorization", "Bearer " + tok),))
                for gid, tok in zip(gids, agent_tokens)]
        for gid, f in zip(gids, futs):
            try:
                r = f.result()
            except grpc.RpcError as e:
                sys.exit("auth_signin: ExchangeToken failed: %s %s" % (e.code().name, e.details()))
            if not r.access_token or r.grant_id != gid:
                sys.exit("auth_signin: ExchangeToken returned no delegated token for the grant")
            out.append((r.access_token, gid, r.expires_at_ms))
    return out


def write_lines(path, lines):
    tmp = path + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write("\n".join(lines) + "\n")
    os.replace(tmp, path)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--target", required=True)
    ap.add_argument("--redis-url", required=True)
    ap.add_argument("--py-dir", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("-n", type=int, default=1000)
    ap.add_argument("--batch", type=int, default=50)
    ap.add_argument("--timeout", type=float, default=30.0, help="seconds per RPC")
    ap.add_argument("--delegated-out", help="also write delegated tokens to this file")
    ap.add_argument("--delegated", type=int, help="how many delegated tokens (default n/2)")
    ap.add_argument("--grants-out", help="the grant ids of --delegated-out, with expiries")
    a = ap.parse_args()
    if not 1 <= a.n <= 100000 or not 1 <= a.batch <= 500:
        sys.exit("auth_signin: -n must be 1..100000 and --batch 1..500")
    if a.delegated_out is None and (a.delegated is not None or a.grants_out):
        sys.exit("auth_signin: --delegated and --grants-out need --delegated-out")
    if a.delegated is None:
        a.delegated = a.n // 2 if a.delegated_out else 0
    if a.delegated_out and not 1 <= a.delegated <= a.n // 2:
        sys.exit("auth_signin: --delegated must be 1..n/2 (two accounts per delegated token)")

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
    accounts = []  # (access token, refresh token, account id), in phone order
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
            if not r.refresh_token or not r.account.account_id:
                sys.exit("auth_signin: SignInWithCode returned no refresh token or account")
            created += 1 if r.account_created else 0
            tokens.append(r.access_token)
            accounts.append((r.access_token, r.refresh_token, r.account.account_id))
    elapsed = time.monotonic() - t0
    if len(set(tokens)) != len(tokens):
        sys.exit("auth_signin: duplicate access tokens")
    if len(set(acc[2] for acc in accounts)) != len(accounts):
        sys.exit("auth_signin: two sign-ins gave the same account")
    write_lines(a.out, tokens)
    print("auth_signin: %d accounts signed in (%d created) in %.1f s, %d distinct tokens -> %s" %
          (len(tokens), created, elapsed, len(set(tokens)), a.out))
    if a.delegated_out:
        t0 = time.monotonic()
        delegated = delegate(a, channel, redis, auth, accounts)
        if len(set(d[0] for d in delegated)) != len(delegated):
            sys.exit("auth_signin: duplicate delegated tokens")
        write_lines(a.delegated_out, [d[0] for d in delegated])
        if a.grants_out:
            write_lines(a.grants_out, ["%s %d" % (d[1], d[2]) for d in delegated])
        left = min(d[2] for d in delegated) / 1000 - time.time()
        print("auth_signin: %d delegated tokens (grant %s, agent at level 2, ExchangeToken) in "
              "%.1f s, the first expires in %.0f s -> %s" %
              (len(delegated), GRANT_SCOPE, time.monotonic() - t0, left, a.delegated_out))
    redis.close()
    channel.close()


if __name__ == "__main__":
    main()
