'use strict';
// Interop of fxb-server with @grpc/grpc-js (what the app's Node tooling
// uses). Starts its own fxb-server like the Python e2e harness does:
//   FXB_BUILD_DIR       build directory (fxb-server, fxb-admin)
//   FXB_SOURCE_DIR      source tree (proto/)
//   FXB_TEST_REDIS_URL  the throw-away Redis of tests/run.sh
// Run: node tests/node/interop.test.js (exits non-zero on failure).
const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { spawn, spawnSync } = require('node:child_process');
const fs = require('node:fs');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');

const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');

const SOURCE_DIR = process.env.FXB_SOURCE_DIR || path.resolve(__dirname, '..', '..');
const BUILD_DIR = process.env.FXB_BUILD_DIR || path.join(SOURCE_DIR, 'build-test');
const REDIS_URL = process.env.FXB_TEST_REDIS_URL || 'redis://127.0.0.1:6379/0';
const SERVER_BIN = path.join(BUILD_DIR, 'fxb-server');
const ADMIN_BIN = path.join(BUILD_DIR, 'fxb-admin');
const SANITIZER_MARKERS = ['ERROR: AddressSanitizer', 'ERROR: LeakSanitizer', 'runtime error:'];
const ALL_SERVICES = ['fxb.v1.DiagService', 'fxb.v1.SystemService', 'grpc.health.v1.Health',
  'grpc.reflection.v1alpha.ServerReflection'];

const LOADER_OPTIONS = {
  keepCase: true,
  longs: String,
  enums: String,
  defaults: true,
  oneofs: true,
  includeDirs: [path.join(SOURCE_DIR, 'proto'), '/usr/include'],
};

function loadProto(file) {
  return grpc.loadPackageDefinition(protoLoader.loadSync(file, LOADER_OPTIONS));
}

const healthPkg = loadProto('grpc/health/v1/health.proto').grpc.health.v1;
const reflectionPkg = loadProto('grpc/reflection/v1alpha/reflection.proto').grpc.reflection.v1alpha;
const systemPkg = loadProto('fxb/v1/system.proto').fxb.v1;
const diagPkg = loadProto('fxb/v1/diag.proto').fxb.v1;

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function deadline(ms) {
  return new Date(Date.now() + ms);
}

function unary(client, method, req, opts = {}) {
  return new Promise((resolve, reject) => {
    const md = new grpc.Metadata();
    for (const [k, v] of Object.entries(opts.metadata || {})) md.set(k, v);
    client[method](req, md, { deadline: deadline(opts.timeoutMs || 10000) }, (err, resp) => {
      if (err) reject(err);
      else resolve(resp);
    });
  });
}

// --- a small protobuf reader for google.rpc.Status in
// grpc-status-details-bin (no extra dependency) ---------------------------
function readVarint(buf, pos) {
  let result = 0n;
  let shift = 0n;
  for (;;) {
    if (pos >= buf.length) throw new Error('truncated varint');
    const b = buf[pos++];
    result |= BigInt(b & 0x7f) << shift;
    if (!(b & 0x80)) return [result, pos];
    shift += 7n;
  }
}

function readFields(buf) {
  const fields = [];
  let pos = 0;
  while (pos < buf.length) {
    let key;
    [key, pos] = readVarint(buf, pos);
    const num = Number(key >> 3n);
    const wt = Number(key & 7n);
    if (wt === 0) {
      let v;
      [v, pos] = readVarint(buf, pos);
      fields.push([num, v]);
    } else if (wt === 2) {
      let len;
      [len, pos] = readVarint(buf, pos);
      const end = pos + Number(len);
      if (end > buf.length) throw new Error('truncated field');
      fields.push([num, buf.subarray(pos, end)]);
      pos = end;
    } else if (wt === 1) {
      pos += 8;
    } else if (wt === 5) {
      pos += 4;
    } else {
      throw new Error(`unsupported wire type ${wt}`);
    }
  }
  return fields;
}

function decodeStatusDetails(buf) {
  const st = { code: 0, message: '', details: [] };
  for (const [num, v] of readFields(buf)) {
    if (num === 1) st.code = Number(BigInt.asIntN(32, v));
    else if (num === 2) st.message = v.toString('utf8');
    else if (num === 3) {
      const any = { typeUrl: '', value: Buffer.alloc(0) };
      for (const [n2, v2] of readFields(v)) {
        if (n2 === 1) any.typeUrl = v2.toString('utf8');
        else if (n2 === 2) any.value = v2;
      }
      st.details.push(any);
    }
  }
  const strings = (b) => Object.fromEntries(readFields(b)
    .filter(([, v]) => Buffer.isBuffer(v)).map(([n, v]) => [n, v.toString('utf8')]));
  for (const d of st.details) {
    if (d.typeUrl.endsWith('/google.rpc.ErrorInfo')) {
      const f = strings(d.value);
      st.errorInfo = { reason: f[1] || '', domain: f[2] || '' };
    } else if (d.typeUrl.endsWith('/google.rpc.LocalizedMessage')) {
      const f = strings(d.value);
      st.localized = { locale: f[1] || '', message: f[2] || '' };
    }
  }
  return st;
}

// --- the server ----------------------------------------------------------
const server = {
  proc: null,
  addr: null,
  log: '',
  tmp: null,
  exit: null, // promise of { code, signal }
  clients: [],
};

function serverEnv(extra) {
  const env = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (!k.startsWith('FXB_') || ['FXB_BUILD_DIR', 'FXB_SOURCE_DIR', 'FXB_TEST_REDIS_URL'].includes(k)) {
      env[k] = v;
    }
  }
  if (!env.ASAN_OPTIONS) env.ASAN_OPTIONS = 'detect_leaks=1:abort_on_error=0:strict_string_checks=1';
  if (!env.UBSAN_OPTIONS) env.UBSAN_OPTIONS = 'print_stacktrace=1:halt_on_error=1';
  if (!env.LSAN_OPTIONS) {
    env.LSAN_OPTIONS = `suppressions=${path.join(SOURCE_DIR, 'tests', 'lsan.supp')}:print_suppressions=0`;
  }
  env.FXB_REDIS_URL = REDIS_URL;
  return Object.assign(env, extra);
}

function admin(args) {
  const r = spawnSync(ADMIN_BIN, args, { env: serverEnv({}), encoding: 'utf8', timeout: 60000 });
  if (r.error) throw r.error;
  return r;
}

function latestSchemaVersion() {
  const r = admin(['version']);
  assert.equal(r.status, 0, r.stderr);
  const m = /\(schema (\d+)\)/.exec(r.stdout);
  assert.ok(m, `unexpected fxb-admin version output: ${r.stdout}`);
  return Number(m[1]);
}

function client(Ctor) {
  const c = new Ctor(server.addr, grpc.credentials.createInsecure());
  server.clients.push(c);
  return c;
}

async function startServer() {
  for (const bin of [SERVER_BIN, ADMIN_BIN]) {
    assert.ok(fs.existsSync(bin), `${bin} missing: build first`);
  }
  const mig = admin(['migrate']);
  assert.equal(mig.status, 0, `fxb-admin migrate failed: ${mig.stdout}${mig.stderr}`);
  server.tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'fxb-node-'));
  const port = await freePort();
  const metricsPort = await freePort();
  server.addr = `127.0.0.1:${port}`;
  const dataDir = path.join(server.tmp, 'data');
  fs.mkdirSync(dataDir);
  server.proc = spawn(SERVER_BIN, [], {
    env: serverEnv({
      FXB_LISTEN: server.addr,
      FXB_METRICS_LISTEN: `127.0.0.1:${metricsPort}`,
      FXB_DATA_DIR: dataDir,
      FXB_WORKERS: '2',
      FXB_ENV: 'development',
    }),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  server.proc.stdout.on('data', (d) => { server.log += d.toString(); });
  server.proc.stderr.on('data', (d) => { server.log += d.toString(); });
  server.exit = new Promise((resolve) => {
    server.proc.on('exit', (code, signal) => resolve({ code, signal }));
  });

  // ready when Health/Check says SERVING; a fresh client per try (a refused
  // first connect makes a channel back off for seconds)
  const until = Date.now() + 20000;
  let last = 'no answer';
  while (Date.now() < until) {
    if (server.proc.exitCode !== null) {
      throw new Error(`fxb-server exited with ${server.proc.exitCode} during start-up:\n${server.log}`);
    }
    const c = new healthPkg.Health(server.addr, grpc.credentials.createInsecure());
    try {
      const r = await unary(c, 'Check', { service: '' }, { timeoutMs: 1000 });
      if (r.status === 'SERVING') return;
      last = r.status;
    } catch (e) {
      last = e.message;
    } finally {
      c.close();
    }
    await sleep(50);
  }
  throw new Error(`fxb-server not ready in 20 s (${last}):\n${server.log.slice(-3000)}`);
}

async function stopServer(signal = 'SIGTERM', timeoutMs = 30000) {
  for (const c of server.clients) c.close();
  server.clients = [];
  if (server.proc.exitCode === null && server.proc.signalCode === null) server.proc.kill(signal);
  let timer;
  const timeout = new Promise((resolve) => { timer = setTimeout(() => resolve(null), timeoutMs); });
  const res = await Promise.race([server.exit, timeout]);
  clearTimeout(timer);
  if (res === null) {
    server.proc.kill('SIGKILL');
    throw new Error(`fxb-server did not exit within ${timeoutMs} ms:\n${server.log.slice(-3000)}`);
  }
  return res;
}

function assertNoSanitizerReport() {
  for (const m of SANITIZER_MARKERS) {
    assert.ok(!server.log.includes(m), `sanitizer report in the server log:\n${server.log.slice(-6000)}`);
  }
}

before(async () => {
  await startServer();
});

after(async () => {
  if (server.proc && server.proc.exitCode === null && server.proc.signalCode === null) {
    await stopServer();
  }
  if (server.tmp) fs.rmSync(server.tmp, { recursive: true, force: true });
});

test('Health/Check of the whole server is SERVING', async () => {
  const r = await unary(client(healthPkg.Health), 'Check', { service: '' });
  assert.equal(r.status, 'SERVING');
});

test('reflection list_services names every service', async () => {
  const c = client(reflectionPkg.ServerReflection);
  const call = c.ServerReflectionInfo({ deadline: deadline(10000) });
  const responses = [];
  const done = new Promise((resolve, reject) => {
    call.on('data', (r) => responses.push(r));
    call.on('error', reject);
    call.on('end', resolve);
  });
  call.write({ list_services: '' });
  call.write({ file_containing_symbol: 'fxb.v1.SystemService' });
  call.end();
  await done;
  assert.equal(responses.length, 2);
  assert.equal(responses[0].message_response, 'list_services_response');
  const names = responses[0].list_services_response.service.map((s) => s.name);
  for (const name of ALL_SERVICES) assert.ok(names.includes(name), `${name} not in ${names}`);
  assert.equal(responses[1].message_response, 'file_descriptor_response');
  assert.ok(responses[1].file_descriptor_response.file_descriptor_proto.length >= 1);
  // the first file is fxb/v1/system.proto: its name is field 1 of the proto
  const first = responses[1].file_descriptor_response.file_descriptor_proto[0];
  const nameField = readFields(first).find(([n]) => n === 1);
  assert.equal(nameField[1].toString('utf8'), 'fxb/v1/system.proto');
});

test('GetInfo returns the schema version and the server time', async () => {
  const c = client(systemPkg.SystemService);
  const t0 = Date.now();
  const r = await unary(c, 'GetInfo', {}, { metadata: { 'x-request-id': 'node-getinfo-1' } });
  const t1 = Date.now();
  assert.match(r.server_version, /^\d+\.\d+\.\d+/);
  assert.equal(r.schema_version, latestSchemaVersion());
  const serverTime = Number(r.server_time_ms);
  assert.ok(serverTime >= t0 - 3000 && serverTime <= t1 + 3000, `server_time_ms ${serverTime} vs ${t0}..${t1}`);
});

test('an error carries its code and grpc-status-details-bin (unknown Health service -> NOT_FOUND)', async () => {
  const c = client(healthPkg.Health);
  await assert.rejects(unary(c, 'Check', { service: 'no.such.Service' }), (err) => {
    assert.equal(err.code, grpc.status.NOT_FOUND);
    const raw = err.metadata.get('grpc-status-details-bin');
    assert.equal(raw.length, 1, 'grpc-status-details-bin missing');
    const st = decodeStatusDetails(raw[0]);
    assert.equal(st.code, grpc.status.NOT_FOUND);
    assert.ok(st.errorInfo, 'no ErrorInfo');
    assert.equal(st.errorInfo.reason, 'UNKNOWN_SERVICE');
    assert.equal(st.errorInfo.domain, 'fxb');
    assert.ok(st.localized, 'no LocalizedMessage');
    assert.equal(st.localized.locale, 'zh-CN');
    assert.ok(st.localized.message.length > 0);
    return true;
  });
});

test('server-streaming Ticks arrive in order', async () => {
  const c = client(diagPkg.DiagService);
  const call = c.Ticks({ count: 20, interval_ms: 5 }, { deadline: deadline(10000) });
  const seqs = [];
  await new Promise((resolve, reject) => {
    call.on('data', (t) => seqs.push(t.seq));
    call.on('error', reject);
    call.on('end', resolve);
  });
  assert.deepEqual(seqs, Array.from({ length: 20 }, (_, i) => i + 1));
});

test('bidi Chat answers every message in order', async () => {
  const c = client(diagPkg.DiagService);
  const md = new grpc.Metadata();
  md.set('x-request-id', 'node-chat-1');
  const call = c.Chat(md, { deadline: deadline(20000) });
  const got = [];
  const done = new Promise((resolve, reject) => {
    call.on('data', (r) => got.push(r));
    call.on('error', reject);
    call.on('end', resolve);
  });
  for (let i = 0; i < 300; i++) call.write({ text: `m${i}` });
  call.end();
  await done;
  assert.deepEqual(got.map((r) => r.text), Array.from({ length: 300 }, (_, i) => `m${i}`));
  assert.ok(got.every((r) => r.request_id === 'node-chat-1'));
});

test('SIGTERM stops the server with exit code 0 and no sanitizer report', async () => {
  const res = await stopServer('SIGTERM');
  assert.deepEqual(res, { code: 0, signal: null }, `server log:\n${server.log.slice(-3000)}`);
  assertNoSanitizerReport();
  assert.match(server.log, /"msg":"stopped"/);
});
