#!/usr/bin/python3
"""Prepares the state bench/filing_run.sh measures on a development
fxb-server: applicants, their wallets, and drafts to submit.

Three commands, sharing a state file (JSON, mode 0600) that holds each
applicant's account id, refresh token, current access token and the id of
the PDF in its wallet:

  setup   signs in N applicants (SendCode, the code from the dev SMS stream
          fxb:dev:sms, SignInWithCode: auth_signin.py's helpers), raises each
          to assurance level 2 (HSET {u:<id>}:account level 2 + Refresh, as
          auth_run.sh's deleg preparation and tests/e2e/fxbtest.py set_level
          do), and uploads one small PDF per applicant
          (MaterialService/UploadMaterial, header + one data chunk; the PDF
          differs per applicant, so every wallet entry is its own blob).
  drafts  refreshes every applicant's access token (AuthService/Refresh: a
          fresh 900 s token for the round to come), then creates K drafts
          of ITEM (CreateApplication), spread round robin over the
          applicants, and attaches the applicant's PDF to every required
          material of the item's current guide (AttachMaterials; the
          materials come from CatalogService/GetItem, each must accept
          pdf). Writes PREFIX.drafts ("<access token> <application id>" a
          line), PREFIX.tokens (the token of each line) and PREFIX.bodies
          (the hex of SubmitApplicationRequest{application_id} of each line,
          which is also the encoding of GetApplicationRequest{application_id}:
          both have only field 1), the three in the same order.
          --submit-expect OUTCOME: also submits every draft here (with
          --check, for the status row: applications in that state) and
          fails unless each answered OUTCOME.
  retoken refreshes every applicant's access token and rewrites
          PREFIX.drafts and PREFIX.tokens of an earlier `drafts` with each
          line's owner's new token (the owner is the token's sub claim):
          the status row's set outlives a token's 900 s.
  check   GetApplication of a sample of the lines of a .drafts file with a
          freshly refreshed token of the owner (the line's token's sub), and
          fails unless every one is in the expected status.

Usage:
  filing_prepare.py setup  --target H:P --redis-url URL --py-dir DIR --state FILE -n N
  filing_prepare.py drafts --target H:P --py-dir DIR --state FILE --item CODE -k K
                           --out PREFIX [--submit-expect SUBMITTED]
  filing_prepare.py retoken --target H:P --py-dir DIR --state FILE --prefix PREFIX
  filing_prepare.py check  --target H:P --py-dir DIR --state FILE --drafts FILE
                           --status SUBMITTED [--sample 200]

The server must run with FXB_ENV=development (dev SMS sink) and code caps
that allow N codes from one address (FXB_OTP_DAILY_IP >= N). --py-dir
holds the protoc --python_out modules of auth, catalog, material and filing
(loaded by file path, as auth_signin.py does). Prints no token.
"""
import argparse
import base64
import json
import os
import random
import sys
import time

import grpc

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import auth_signin  # noqa: E402  (the bench's sign-in helpers)


def die(msg):
    sys.exit("filing_prepare: " + msg)


def md(token):
    return (("authorization", "Bearer " + token),)


def rpc_error(what, e):
    info = ""
    try:
        info = e.details()
    except Exception:  # noqa: BLE001
        pass
    die("%s failed: %s %s" % (what, e.code().name, info))


def wait_all(futs, what):
    out = []
    for f in futs:
        try:
            out.append(f.result())
        except grpc.RpcError as e:
            rpc_error(what, e)
    return out


class Api:
    def __init__(self, a):
        self.a = a
        self.auth = auth_signin.load_module(a.py_dir, "fxb/v1/auth")
        self.catalog = auth_signin.load_module(a.py_dir, "fxb/v1/catalog")
        self.material = auth_signin.load_module(a.py_dir, "fxb/v1/material")
        self.filing = auth_signin.load_module(a.py_dir, "fxb/v1/filing")
        self.channel = grpc.insecure_channel(a.target, options=[
            ("grpc.max_receive_message_length", 16 << 20)])
        grpc.channel_ready_future(self.channel).result(timeout=a.timeout)
        A, C, M, F = self.auth, self.catalog, self.material, self.filing
        u = self.channel.unary_unary
        self.send_code = u("/fxb.v1.AuthService/SendCode",
                           request_serializer=A.SendCodeRequest.SerializeToString,
                           response_deserializer=A.SendCodeResponse.FromString)
        self.sign_in = u("/fxb.v1.AuthService/SignInWithCode",
                         request_serializer=A.SignInWithCodeRequest.SerializeToString,
                         response_deserializer=A.TokenResponse.FromString)
        self.refresh = u("/fxb.v1.AuthService/Refresh",
                         request_serializer=A.RefreshRequest.SerializeToString,
                         response_deserializer=A.TokenResponse.FromString)
        self.get_item = u("/fxb.v1.CatalogService/GetItem",
                          request_serializer=C.GetItemRequest.SerializeToString,
                          response_deserializer=C.ServiceItem.FromString)
        self.upload = self.channel.stream_unary(
            "/fxb.v1.MaterialService/UploadMaterial",
            request_serializer=M.UploadChunk.SerializeToString,
            response_deserializer=M.Material.FromString)
        self.create = u("/fxb.v1.FilingService/CreateApplication",
                        request_serializer=F.CreateApplicationRequest.SerializeToString,
                        response_deserializer=F.Application.FromString)
        self.attach = u("/fxb.v1.FilingService/AttachMaterials",
                        request_serializer=F.AttachMaterialsRequest.SerializeToString,
                        response_deserializer=F.Application.FromString)
        self.submit = u("/fxb.v1.FilingService/SubmitApplication",
                        request_serializer=F.SubmitApplicationRequest.SerializeToString,
                        response_deserializer=F.SubmitResult.FromString)
        self.get_app = u("/fxb.v1.FilingService/GetApplication",
                         request_serializer=F.GetApplicationRequest.SerializeToString,
                         response_deserializer=F.Application.FromString)

    def batches(self, seq):
        for b in range(0, len(seq), self.a.batch):
            yield seq[b:b + self.a.batch]


# --- state -------------------------------------------------------------------

def load_state(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        die("cannot read the state %s: %s" % (path, e))


def save_state(path, state):
    tmp = path + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(state, f)
    os.replace(tmp, path)


def refresh_all(api, state):
    """A fresh access token for every applicant (Refresh rotates the refresh
    token too); the state is updated in place."""
    A = api.auth
    apps = state["applicants"]
    for batch in api.batches(apps):
        futs = [api.refresh.future(A.RefreshRequest(refresh_token=x["refresh"]),
                                   timeout=api.a.timeout) for x in batch]
        for x, r in zip(batch, wait_all(futs, "Refresh")):
            if not r.access_token or not r.refresh_token:
                die("Refresh returned no tokens")
            if r.account.assurance_level not in (0, 2):
                die("Refresh gave a token of level %d, not 2" % r.account.assurance_level)
            x["access"], x["refresh"] = r.access_token, r.refresh_token
    state["refreshed_at"] = time.time()


# --- setup -------------------------------------------------------------------

def pdf_for(i):
    """A small valid-looking PDF, different for each applicant."""
    return (b"%PDF-1.7\n1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj\n"
            b"% fxb filing bench applicant " + str(i).encode() + b"\n" +
            b"2 0 obj << /Type /Pages /Kids [] /Count 0 >> endobj\n" * 8 + b"%%EOF\n")


def cmd_setup(a):
    api = Api(a)
    A, M = api.auth, api.material
    redis = auth_signin.Redis(a.redis_url)
    t0 = time.monotonic()
    # unique 137xxxxxxxx numbers from a random start (auth_signin uses 139)
    start = random.randrange(0, 10 ** 8 - a.n)
    phones = ["137%08d" % (start + i) for i in range(a.n)]
    applicants = []
    for b, batch in enumerate(api.batches(phones)):
        wait_all([api.send_code.future(A.SendCodeRequest(phone=p, purpose=A.CODE_PURPOSE_SIGN_IN),
                                       timeout=a.timeout) for p in batch], "SendCode")
        codes = auth_signin.latest_codes(redis, batch, 4 * len(batch))
        if len(codes) != len(batch):
            die("no code in %s for %d of %d numbers (development server with FXB_SMS=dev "
                "or auto, on this Redis?)" % (auth_signin.SMS_STREAM, len(batch) - len(codes),
                                              len(batch)))
        futs = [api.sign_in.future(A.SignInWithCodeRequest(
            phone=p, code=codes[p],
            device=A.Device(device_id="filing-bench-%06d" % (b * a.batch + i), name="fxb bench")),
            timeout=a.timeout) for i, p in enumerate(batch)]
        for r in wait_all(futs, "SignInWithCode"):
            if not r.refresh_token or not r.account.account_id:
                die("SignInWithCode returned no refresh token or account")
            applicants.append({"account": r.account.account_id, "refresh": r.refresh_token,
                               "access": r.access_token})
    if len({x["account"] for x in applicants}) != len(applicants):
        die("two sign-ins gave the same account")
    t_sign = time.monotonic() - t0
    # level 2 (real name): what CreateApplication requires
    for batch in api.batches(applicants):
        redis.pipeline([["HSET", "{u:%s}:account" % x["account"], "level", 2] for x in batch])
    redis.close()
    state = {"applicants": applicants}
    refresh_all(api, state)
    # one PDF in each wallet
    for b, batch in enumerate(api.batches(applicants)):
        futs = []
        for i, x in enumerate(batch):
            data = pdf_for(b * a.batch + i)
            msgs = [M.UploadChunk(header=M.UploadHeader(file_name="材料.pdf", size=len(data))),
                    M.UploadChunk(data=data)]
            futs.append(api.upload.future(iter(msgs), metadata=md(x["access"]),
                                          timeout=a.timeout))
        for x, r in zip(batch, wait_all(futs, "UploadMaterial")):
            if not r.material_id or r.content_type != "application/pdf":
                die("UploadMaterial gave no PDF material (%r)" % r.content_type)
            x["pdf"] = r.material_id
    save_state(a.state, state)
    print("filing_prepare: %d applicants signed in (%.1f s), at level 2, one PDF each "
          "(%.1f s in all) -> %s" % (len(applicants), t_sign, time.monotonic() - t0, a.state))


# --- drafts ------------------------------------------------------------------

def required_codes(api, item):
    C = api.catalog
    try:
        it = api.get_item(C.GetItemRequest(code=item), timeout=api.a.timeout)
    except grpc.RpcError as e:
        rpc_error("GetItem(%s)" % item, e)
    codes = []
    for m in it.guide.materials:
        if m.requirement != C.MATERIAL_REQUIREMENT_REQUIRED:
            continue
        forms = [str(f).lower() for f in m.accepted_forms]
        if not any("pdf" in f for f in forms):
            die("%s %s does not accept a PDF upload (%s): choose another item" %
                (item, m.code, forms))
        codes.append(m.code)
    if not codes:
        die("%s has no required material" % item)
    return it, codes


def cmd_drafts(a):
    api = Api(a)
    F = api.filing
    state = load_state(a.state)
    apps = state["applicants"]
    t0 = time.monotonic()
    refresh_all(api, state)
    save_state(a.state, state)
    item, codes = required_codes(api, a.item)
    # round robin, from where the last call stopped: successive calls
    # spread the drafts evenly over the applicants
    off = state.get("next_owner", 0) % len(apps)
    owners = [apps[(off + i) % len(apps)] for i in range(a.k)]
    state["next_owner"] = (off + a.k) % len(apps)
    save_state(a.state, state)
    aids = []
    for batch in api.batches(owners):
        futs = [api.create.future(F.CreateApplicationRequest(item_code=a.item),
                                  metadata=md(x["access"]), timeout=a.timeout) for x in batch]
        created = wait_all(futs, "CreateApplication")
        for r in created:
            if r.status != F.APPLICATION_STATUS_DRAFT or not r.application_id:
                die("CreateApplication gave no draft")
        futs = [api.attach.future(F.AttachMaterialsRequest(
            application_id=r.application_id, material_code=c, material_ids=[x["pdf"]]),
            metadata=md(x["access"]), timeout=a.timeout)
            for x, r in zip(batch, created) for c in codes]
        wait_all(futs, "AttachMaterials")
        aids += [r.application_id for r in created]
    t_create = time.monotonic() - t0
    if len(set(aids)) != len(aids):
        die("two drafts with the same id")
    submitted = 0
    if a.submit_expect:
        want = F.SubmitOutcome.Value("SUBMIT_OUTCOME_" + a.submit_expect)
        pairs = list(zip(owners, aids))
        for batch in api.batches(pairs):
            futs = [api.submit.future(F.SubmitApplicationRequest(application_id=aid),
                                      metadata=md(x["access"]), timeout=a.timeout)
                    for x, aid in batch]
            for r in wait_all(futs, "SubmitApplication"):
                if r.outcome != want:
                    die("SubmitApplication answered %s, not %s (problems: %s)" % (
                        F.SubmitOutcome.Name(r.outcome), F.SubmitOutcome.Name(want),
                        "; ".join("%s %s" % (p.material_code, F.ProblemKind.Name(p.kind))
                                  for p in r.problems)))
                submitted += 1
    req = F.SubmitApplicationRequest
    auth_signin.write_lines(a.out + ".drafts", ["%s %s" % (x["access"], aid) for x, aid in zip(owners, aids)])
    auth_signin.write_lines(a.out + ".tokens", [x["access"] for x in owners])
    auth_signin.write_lines(a.out + ".bodies", [req(application_id=aid).SerializeToString().hex()
                                    for aid in aids])
    print("filing_prepare: %d drafts of %s %s (guide v%d, %s attached) over %d applicants in "
          "%.1f s%s -> %s.{drafts,tokens,bodies}" % (
              len(aids), a.item, item.name, item.guide.version, "+".join(codes),
              min(len(apps), a.k), t_create,
              ", then submitted (all %s)" % a.submit_expect if submitted else "", a.out))


# --- check -------------------------------------------------------------------

def token_subject(token):
    """The sub claim of a JWT (not verified: the server does that)."""
    try:
        payload = token.split(".")[1]
        payload += "=" * (-len(payload) % 4)
        return json.loads(base64.urlsafe_b64decode(payload)).get("sub")
    except (IndexError, ValueError):
        return None


def read_drafts(path):
    with open(path) as f:
        return [ln.split() for ln in f if ln.strip()]


def owners_tokens(api, state, lines):
    """Refreshes every applicant; the current token of each line's owner."""
    refresh_all(api, state)
    current = {x["account"]: x["access"] for x in state["applicants"]}
    out = []
    for tok, _ in lines:
        sub = token_subject(tok)
        if sub not in current:
            die("a line's token is of no applicant of the state")
        out.append(current[sub])
    return out


def cmd_retoken(a):
    api = Api(a)
    state = load_state(a.state)
    lines = read_drafts(a.prefix + ".drafts")
    tokens = owners_tokens(api, state, lines)
    save_state(a.state, state)
    auth_signin.write_lines(a.prefix + ".drafts", ["%s %s" % (t, aid)
                                                   for t, (_, aid) in zip(tokens, lines)])
    auth_signin.write_lines(a.prefix + ".tokens", tokens)
    print("filing_prepare: %d applicants refreshed, %d lines of %s re-tokened" % (
        len(state["applicants"]), len(lines), a.prefix))


def cmd_check(a):
    api = Api(a)
    F = api.filing
    state = load_state(a.state)
    lines = read_drafts(a.drafts)
    sample = lines if len(lines) <= a.sample else random.sample(lines, a.sample)
    # the line's token may have expired: the owner's current one
    tokens = owners_tokens(api, state, sample)
    save_state(a.state, state)
    want = F.ApplicationStatus.Value("APPLICATION_STATUS_" + a.status)
    futs = [api.get_app.future(F.GetApplicationRequest(application_id=aid), metadata=md(tok),
                               timeout=a.timeout) for tok, (_, aid) in zip(tokens, sample)]
    bad = {}
    for r in wait_all(futs, "GetApplication"):
        if r.status != want:
            name = F.ApplicationStatus.Name(r.status)
            bad[name] = bad.get(name, 0) + 1
    if bad:
        die("%d of %d sampled applications are not %s: %s" % (
            sum(bad.values()), len(sample), a.status,
            ", ".join("%s %d" % kv for kv in sorted(bad.items()))))
    print("filing_prepare: check: %d of %d applications sampled, all %s" % (
        len(sample), len(lines), a.status))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--target", required=True)
    common.add_argument("--py-dir", required=True)
    common.add_argument("--state", required=True)
    common.add_argument("--batch", type=int, default=100, help="calls in flight at once")
    common.add_argument("--timeout", type=float, default=30.0, help="seconds per RPC")
    s = sub.add_parser("setup", parents=[common])
    s.add_argument("--redis-url", required=True)
    s.add_argument("-n", type=int, required=True, help="applicants")
    d = sub.add_parser("drafts", parents=[common])
    d.add_argument("--item", required=True)
    d.add_argument("-k", type=int, required=True, help="drafts")
    d.add_argument("--out", required=True, help="prefix of the three files written")
    d.add_argument("--submit-expect", help="submit them too; every outcome must be this "
                   "(e.g. SUBMITTED)")
    r = sub.add_parser("retoken", parents=[common])
    r.add_argument("--prefix", required=True)
    c = sub.add_parser("check", parents=[common])
    c.add_argument("--drafts", required=True)
    c.add_argument("--status", required=True, help="e.g. SUBMITTED, COMPLETED")
    c.add_argument("--sample", type=int, default=200)
    a = ap.parse_args()
    if not 1 <= a.batch <= 1000:
        die("--batch must be 1..1000")
    if a.cmd == "setup":
        if not 1 <= a.n <= 100000:
            die("-n must be 1..100000")
        cmd_setup(a)
    elif a.cmd == "drafts":
        if not 1 <= a.k <= 1000000:
            die("-k must be 1..1000000")
        cmd_drafts(a)
    elif a.cmd == "retoken":
        cmd_retoken(a)
    else:
        cmd_check(a)


if __name__ == "__main__":
    main()
