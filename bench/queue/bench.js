'use strict';
// Job-queue benchmark: Flow's durable queues against BullMQ on redis-server, in the
// same run. Started by run.sh (which installs, builds and exports FLOW_BIN); see
// README.md. All traffic is on 127.0.0.1; every loop is bounded by a count and a deadline.
const fs = require('fs');
const os = require('os');
const path = require('path');
const http = require('http');
const net = require('net');
const { spawn, execFileSync } = require('child_process');
const { performance } = require('perf_hooks');

const HERE = __dirname;
const ROOT = path.resolve(HERE, '..', '..');

// --- Settings -------------------------------------------------------------------------
function env(name, fallback) {
  const v = process.env[name];
  return v === undefined || v === '' ? fallback : v;
}
function int(name, fallback) {
  const v = Number(env(name, fallback));
  if (!Number.isInteger(v) || v < 0) throw new Error(`${name} must be a non-negative integer`);
  return v;
}
const list = (name, fallback) => env(name, fallback).split(',').map((s) => s.trim()).filter(Boolean);

const S = {
  n: int('N', 20000),
  batch: int('BATCH', 1000),
  repeat: int('REPEAT', 3),
  workloads: list('WORKLOADS', 'noop,small'),
  systems: list('SYSTEMS', 'flow,bullmq,bullmq-aof'),
  // Flow worker settings as CONCURRENCYxBATCH. FLOW_SETTING skips the sweep.
  flowSweep: list('FLOW_SWEEP', '2x16,2x64,4x16,4x64'),
  flowSetting: env('FLOW_SETTING', ''),
  sweepN: int('SWEEP_N', 0), // 0: N
  sweepRepeat: int('SWEEP_REPEAT', 2),
  bullConcurrency: int('BULL_CONCURRENCY', 50),
  pollMs: int('POLL_MS', 50),
  poll: env('POLL', 'last'), // Flow: last | counts
  payloadBytes: int('PAYLOAD_BYTES', 200),
  quietLoad: Number(env('QUIET_LOAD', '1.0')),
  quietWaitS: int('QUIET_WAIT', 600),
  runTimeoutS: int('RUN_TIMEOUT', 120),
  fetchConcurrency: int('FETCH_CONCURRENCY', 8),
  results: env('RESULTS', path.join(ROOT, 'bench', 'RESULTS.md')),
  outDir: env('OUT_DIR', path.join(HERE, 'out')),
  flowBin: env('FLOW_BIN', ''),
  flowBinDesc: env('FLOW_BIN_DESC', ''),
  runCommand: env('RUN_COMMAND', './bench/queue/run.sh'),
  commit: env('COMMIT', 'unknown'),
  queue: 'lead-processing',
};
if (!S.sweepN) S.sweepN = S.n;
if (S.n < 1 || S.batch < 1 || S.batch > 1000) throw new Error('N >= 1 and 1 <= BATCH <= 1000');
if (S.pollMs < 1 || S.repeat < 1) throw new Error('POLL_MS and REPEAT must be positive');
if (!['last', 'counts'].includes(S.poll)) throw new Error('POLL must be last or counts');
for (const w of S.workloads) if (!['noop', 'small'].includes(w)) throw new Error(`unknown workload ${w}`);
for (const s of S.systems) if (!['flow', 'bullmq', 'bullmq-aof'].includes(s)) throw new Error(`unknown system ${s}`);
const parseSetting = (s) => {
  const m = /^(\d+)x(\d+)$/.exec(s);
  if (!m || +m[1] < 1 || +m[2] < 1) throw new Error(`bad Flow setting ${s} (want CONCURRENCYxBATCH, e.g. 4x64)`);
  return { concurrency: +m[1], batch: +m[2], name: s };
};
const SYSTEM_NAMES = {
  flow: 'Flow (SQLite WAL)',
  bullmq: 'BullMQ, redis AOF off',
  'bullmq-aof': 'BullMQ, redis AOF everysec',
};

const RUN_STAMP = new Date().toISOString().replace(/[-:]/g, '').slice(0, 15);
const log = (msg) => process.stderr.write(`[queue ${new Date().toISOString().slice(11, 19)}] ${msg}\n`);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const nowMs = () => performance.timeOrigin + performance.now(); // wall clock, sub-ms
const loadavg = () => os.loadavg().map((x) => x.toFixed(2)).join(' ');

// --- Payloads -------------------------------------------------------------------------
// "small": about PAYLOAD_BYTES of JSON, different per job; "noop": {}.
function payload(workload, i) {
  if (workload === 'noop') return {};
  const base = {
    seq: i,
    tenant: 'bench',
    leadId: `lead-${String(i).padStart(8, '0')}`,
    email: `lead${i}@example.com`,
    event: 'lead.qualified',
    note: '',
  };
  const pad = Math.max(0, S.payloadBytes - JSON.stringify(base).length);
  base.note = 'x'.repeat(pad);
  return base;
}

// --- Stats and CPU ----------------------------------------------------------------------
function percentile(sorted, q) {
  if (!sorted.length) return null;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))];
}
const CLK_TCK = (() => {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK']).toString().trim()) || 100;
  } catch {
    return 100;
  }
})();
function procTicks(pid) {
  try {
    const s = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
    return Number(f[11]) + Number(f[12]); // utime + stime
  } catch {
    return null;
  }
}
function machineTicks() {
  const f = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
  const total = f.reduce((a, b) => a + b, 0);
  return { busy: total - f[3] - (f[4] || 0), total };
}
function cpuSnapshot(pids) {
  return { t: nowMs(), pids: Object.fromEntries(Object.entries(pids).map(([k, p]) => [k, procTicks(p)])), self: process.cpuUsage(), machine: machineTicks() };
}
// CPU in % of one core (a 2-core machine has 200%) between two snapshots.
function cpuDiff(a, b) {
  const wallS = (b.t - a.t) / 1000;
  const pct = (ticks) => (100 * ticks) / CLK_TCK / wallS;
  const out = { system: 0, parts: {} };
  for (const k of Object.keys(a.pids)) {
    if (a.pids[k] === null || b.pids[k] === null) continue;
    out.parts[k] = pct(b.pids[k] - a.pids[k]);
    out.system += out.parts[k];
  }
  const self = process.cpuUsage(a.self);
  out.driver = (100 * (self.user + self.system)) / 1e6 / wallS;
  const cores = os.cpus().length;
  const dt = b.machine.total - a.machine.total;
  out.machine = dt > 0 ? (100 * cores * (b.machine.busy - a.machine.busy)) / dt : null;
  out.else = out.machine === null ? null : Math.max(0, out.machine - out.system - out.driver);
  return out;
}
function dirBytes(dir) {
  let total = 0;
  const walk = (d) => {
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.isFile()) total += fs.statSync(p).size;
    }
  };
  try {
    walk(dir);
  } catch {
    /* gone */
  }
  return total;
}

// --- Processes ----------------------------------------------------------------------------
// Every child still running, so an interrupted run leaves none behind.
const LIVE = new Set();
const LIVE_DIRS = new Set(); // temporary directories, removed on an interrupt too
function tempDir(prefix) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  LIVE_DIRS.add(dir);
  return dir;
}
function removeDir(dir) {
  fs.rmSync(dir, { recursive: true, force: true });
  LIVE_DIRS.delete(dir);
}
let interrupted = false;
function track(child) {
  LIVE.add(child);
  child.once('exit', () => LIVE.delete(child));
  if (interrupted) child.kill('SIGKILL');
  return child;
}
for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, () => {
    interrupted = true;
    for (const c of LIVE) c.kill('SIGKILL');
    // Give the killed processes a moment to let go of their files; anything started
    // meanwhile is killed as it is tracked, and again here.
    setTimeout(() => {
      for (const c of LIVE) c.kill('SIGKILL');
      for (const d of LIVE_DIRS) fs.rmSync(d, { recursive: true, force: true });
      process.exit(sig === 'SIGINT' ? 130 : 143);
    }, 200);
  });
}
function waitExit(child, ms) {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(true);
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), ms);
    child.once('exit', () => {
      clearTimeout(timer);
      resolve(true);
    });
  });
}
async function stopChild(child, ms = 10000) {
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  child.kill('SIGTERM');
  if (!(await waitExit(child, ms))) {
    child.kill('SIGKILL');
    await waitExit(child, 5000);
  }
}
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
// Lines of a child's stdout until `re` matches, with a deadline.
function waitForLine(child, re, ms, what) {
  return new Promise((resolve, reject) => {
    let buf = '';
    const timer = setTimeout(() => done(new Error(`${what}: nothing matching ${re} within ${ms} ms`)), ms);
    const onData = (d) => {
      buf += d.toString();
      const m = re.exec(buf);
      if (m) done(null, m);
    };
    const onExit = (code) => done(new Error(`${what} exited (${code}) during startup: ${buf.slice(-500)}`));
    function done(err, m) {
      clearTimeout(timer);
      child.stdout.off('data', onData);
      child.off('exit', onExit);
      if (err) reject(err);
      else resolve(m);
    }
    child.stdout.on('data', onData);
    child.once('exit', onExit);
  });
}

// --- HTTP ---------------------------------------------------------------------------------
const agent = new http.Agent({ keepAlive: true, maxSockets: 16 });
function request(method, url, headers = {}, body = null, timeoutMs = 30000) {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method, headers, agent, timeout: timeoutMs }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode, body: Buffer.concat(chunks).toString() }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`${method} ${url}: timed out after ${timeoutMs} ms`)));
    req.on('error', reject);
    if (body !== null) req.end(body);
    else req.end();
  });
}
// "2026-11-22T02:08:53.581873Z" -> microseconds since the epoch.
function isoMicros(s) {
  const m = /^(.*T\d\d:\d\d:\d\d)(?:\.(\d+))?Z$/.exec(s || '');
  if (!m) throw new Error(`unexpected timestamp ${s}`);
  return Date.parse(`${m[1]}Z`) * 1000 + Number((m[2] || '').padEnd(6, '0').slice(0, 6));
}

// --- Flow -----------------------------------------------------------------------------------
// Flow reads every FLOW_* variable as a setting and rejects unknown ones: its children
// get none but the worker settings of the run.
function flowEnv(setting) {
  const e = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (k.startsWith('FLOW_') || k === 'DATABASE_URL') continue;
    e[k] = v;
  }
  e.RUST_LOG = 'warn';
  e.FLOW_WORKER_CONCURRENCY = String(setting.concurrency);
  e.FLOW_WORKER_BATCH = String(setting.batch);
  return e;
}

async function startFlow(setting) {
  const dir = tempDir('flow-queue-');
  const data = path.join(dir, 'data');
  const e = flowEnv(setting);
  let child = null;
  try {
    const cli = (...args) => execFileSync(S.flowBin, ['--data-dir', data, ...args], { env: e, timeout: 30000, stdio: ['ignore', 'pipe', 'pipe'] }).toString();
    const slug = (/^tenant:\s+(\S+)/m.exec(cli('tenant', 'create', 'Bench')) || [])[1];
    if (!slug) throw new Error('could not read the tenant slug');
    const key = (/^api key:\s+(flow_sk_\S+)/m.exec(cli('key', 'create', '--tenant', slug, '--name', 'bench', '--rate-limit', '1000000')) || [])[1];
    if (!key) throw new Error('could not read the API key');
    const logFile = path.join(dir, 'server.log');
    const logFd = fs.openSync(logFile, 'w');
    child = track(spawn(S.flowBin, ['--data-dir', data, 'serve', '--host', '127.0.0.1', '--port', '0'], { env: e, stdio: ['ignore', 'pipe', logFd] }));
    fs.closeSync(logFd);
    const m = await waitForLine(child, /Flow is listening on (http:\/\/127\.0\.0\.1:\d+)/, 30000, 'flow serve');
    child.stdout.resume(); // keep draining
    const url = m[1];
    const health = await request('GET', `${url}/health`);
    if (health.status !== 200) throw new Error(`GET /health answered ${health.status}`);
    return { dir, data, key, url, child, logFile };
  } catch (err) {
    await stopChild(child);
    removeDir(dir);
    throw err;
  }
}

function logProblems(file) {
  const counts = {};
  let text = '';
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch {
    return counts;
  }
  for (const raw of text.split('\n')) {
    const line = raw.replace(/\x1b\[[0-9;]*m/g, '').trim();
    if (!/\b(WARN|ERROR)\b/.test(line)) continue;
    const msg = line.replace(/^\S+\s+/, '').slice(0, 160);
    counts[msg] = (counts[msg] || 0) + 1;
  }
  return counts;
}

async function runFlow(workload, setting, n) {
  const f = await startFlow(setting);
  const headers = { 'x-tenant-key': f.key };
  const result = { system: 'flow', workload, n, setting: setting.name, loadavg: loadavg() };
  try {
    // The job lists are made before the clock starts; serialising them is timed (as in addBulk).
    const batches = [];
    for (let i = 0; i < n; i += S.batch) {
      const jobs = [];
      for (let j = i; j < Math.min(n, i + S.batch); j++) jobs.push({ kind: 'ping', payload: payload(workload, j) });
      batches.push(jobs);
    }
    const ids = [];
    const enqueueUrl = `${f.url}/admin/queues/${S.queue}/jobs`;
    const postHeaders = { ...headers, 'content-type': 'application/json' };
    const c0 = cpuSnapshot({ flow: f.child.pid });
    const t0 = nowMs();
    for (const jobs of batches) {
      const res = await request('POST', enqueueUrl, postHeaders, JSON.stringify({ jobs }));
      if (res.status !== 202) throw new Error(`enqueue answered ${res.status}: ${res.body.slice(0, 300)}`);
      const made = JSON.parse(res.body);
      if (made.length !== jobs.length) throw new Error(`enqueue made ${made.length} of ${jobs.length} jobs`);
      for (const job of made) ids.push(job.id);
    }
    const tEnq = nowMs();
    // Wait for all N to complete. POLL=last (default): poll the last enqueued job
    // (`GET /jobs/{id}`, one row) until it is finished, then the queue's counts until all N
    // are completed. POLL=counts: poll the counts (`GET /admin/queues`) from the start; that
    // query reads every job of the tenant, so it costs Flow CPU that grows with the table.
    const deadline = t0 + S.runTimeoutS * 1000;
    const maxPolls = Math.ceil((S.runTimeoutS * 1000) / S.pollMs) + 1;
    const lastId = ids[ids.length - 1];
    let counts = null;
    let polls = 0;
    if (S.poll === 'last') {
      for (; polls < maxPolls && nowMs() < deadline; polls++) {
        const res = await request('GET', `${f.url}/jobs/${lastId}`, headers);
        if (res.status !== 200) throw new Error(`GET /jobs/${lastId} answered ${res.status}`);
        const st = JSON.parse(res.body).state;
        if (st === 'completed' || st === 'dead') break;
        await sleep(S.pollMs);
      }
    }
    for (; polls < 2 * maxPolls && nowMs() < deadline; polls++) {
      const res = await request('GET', `${f.url}/admin/queues`, headers);
      if (res.status !== 200) throw new Error(`GET /admin/queues answered ${res.status}`);
      counts = JSON.parse(res.body).find((q) => q.name === S.queue);
      if (counts.completed >= n || counts.dead > 0) break;
      await sleep(S.pollMs);
    }
    const tPoll = nowMs();
    const cpu = cpuDiff(c0, cpuSnapshot({ flow: f.child.pid }));
    if (!counts || counts.completed < n) throw new Error(`only ${counts && counts.completed} of ${n} completed within ${S.runTimeoutS} s (dead ${counts && counts.dead})`);
    // Every job's enqueue→completion latency, from its own timestamps (not timed).
    const lat = new Array(ids.length);
    let maxFinish = 0;
    let minCreated = Infinity;
    let next = 0;
    const fetchDeadline = nowMs() + S.runTimeoutS * 1000;
    await Promise.all(
      Array.from({ length: S.fetchConcurrency }, async () => {
        while (next < ids.length) {
          if (nowMs() > fetchDeadline) throw new Error('reading the jobs back took too long');
          const i = next++;
          const res = await request('GET', `${f.url}/jobs/${ids[i]}`, headers);
          if (res.status !== 200) throw new Error(`GET /jobs/${ids[i]} answered ${res.status}`);
          const job = JSON.parse(res.body);
          if (job.state !== 'completed') throw new Error(`job ${ids[i]} is ${job.state}`);
          const c = isoMicros(job.createdAt);
          const fin = isoMicros(job.finishedAt);
          lat[i] = (fin - c) / 1000;
          if (fin > maxFinish) maxFinish = fin;
          if (c < minCreated) minCreated = c;
        }
      }),
    );
    Object.assign(result, summarise(lat, t0, tEnq, tPoll, maxFinish / 1000, minCreated / 1000, n), {
      cpu,
      diskBytes: dirBytes(f.data),
    });
  } finally {
    await stopChild(f.child);
    result.serverLog = logProblems(f.logFile);
    removeDir(f.dir);
  }
  return result;
}

function summarise(lat, t0, tEnq, tPoll, lastFinishMs, firstCreatedMs, n) {
  const sorted = Float64Array.from(lat).sort();
  const e2eS = (lastFinishMs - t0) / 1000;
  return {
    e2eS,
    jobsPerS: n / e2eS,
    enqueueS: (tEnq - t0) / 1000,
    enqueuePerS: n / ((tEnq - t0) / 1000),
    pollS: (tPoll - t0) / 1000,
    firstCreatedAfterT0Ms: firstCreatedMs - t0,
    p50Ms: percentile(sorted, 0.5),
    p99Ms: percentile(sorted, 0.99),
    maxMs: sorted[sorted.length - 1],
    latencySamples: sorted.length,
  };
}

// --- BullMQ -------------------------------------------------------------------------------
async function startRedis(aof) {
  const IORedis = require('ioredis');
  const dir = tempDir('bullmq-queue-');
  const port = await freePort();
  const args = ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--dir', dir, '--daemonize', 'no', '--logfile', path.join(dir, 'redis.log')];
  args.push(...(aof ? ['--appendonly', 'yes', '--appendfsync', 'everysec'] : ['--appendonly', 'no']));
  const child = track(spawn('redis-server', args, { stdio: 'ignore' }));
  const deadline = nowMs() + 15000;
  for (let k = 0; k < 150; k++) {
    if (child.exitCode !== null) {
      const tail = fs.existsSync(path.join(dir, 'redis.log')) ? fs.readFileSync(path.join(dir, 'redis.log'), 'utf8').slice(-300) : '';
      removeDir(dir);
      throw new Error(`redis-server exited (${child.exitCode}): ${tail}`);
    }
    const c = new IORedis({ host: '127.0.0.1', port, lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
    c.on('error', () => {});
    try {
      await c.connect();
      if ((await c.ping()) === 'PONG') {
        c.disconnect();
        return { dir, port, child, args };
      }
    } catch {
      /* not up yet */
    }
    c.disconnect();
    if (nowMs() > deadline) break;
    await sleep(100);
  }
  await stopChild(child);
  removeDir(dir);
  throw new Error('redis-server did not answer PING within 15 s');
}

async function runBull(workload, aof, n) {
  const { Queue } = require('bullmq');
  const system = aof ? 'bullmq-aof' : 'bullmq';
  const r = await startRedis(aof);
  const result = { system, workload, n, loadavg: loadavg() };
  let worker = null;
  let queue = null;
  let workerErr = '';
  try {
    worker = track(
      spawn(process.execPath, [path.join(HERE, 'bullmq-worker.js')], {
        env: { ...process.env, REDIS_PORT: String(r.port), QUEUE: S.queue, CONCURRENCY: String(S.bullConcurrency) },
        stdio: ['ignore', 'pipe', 'pipe'],
      }),
    );
    worker.stderr.on('data', (d) => {
      if (workerErr.length < 4000) workerErr += d.toString();
    });
    await waitForLine(worker, /^ready$/m, 15000, 'bullmq worker');
    worker.stdout.resume();
    queue = new Queue(S.queue, { connection: { host: '127.0.0.1', port: r.port, maxRetriesPerRequest: null } });
    queue.on('error', (e) => log(`queue error: ${e.message}`));
    await queue.waitUntilReady();
    const batches = [];
    for (let i = 0; i < n; i += S.batch) {
      const jobs = [];
      for (let j = i; j < Math.min(n, i + S.batch); j++) jobs.push({ name: 'ping', data: payload(workload, j) });
      batches.push(jobs);
    }
    const pids = { redis: r.child.pid, worker: worker.pid };
    const c0 = cpuSnapshot(pids);
    const t0 = nowMs();
    for (const jobs of batches) {
      const made = await queue.addBulk(jobs);
      if (made.length !== jobs.length) throw new Error(`addBulk made ${made.length} of ${jobs.length} jobs`);
    }
    const tEnq = nowMs();
    const deadline = t0 + S.runTimeoutS * 1000;
    let counts = null;
    for (let k = 0; k < Math.ceil((S.runTimeoutS * 1000) / S.pollMs) + 1 && nowMs() < deadline; k++) {
      counts = await queue.getJobCounts('completed', 'failed');
      if (counts.completed >= n || counts.failed > 0) break;
      await sleep(S.pollMs);
    }
    const tPoll = nowMs();
    const cpu = cpuDiff(c0, cpuSnapshot(pids));
    if (!counts || counts.completed < n) throw new Error(`only ${counts && counts.completed} of ${n} completed within ${S.runTimeoutS} s (failed ${counts && counts.failed})`);
    const lat = [];
    let maxFinish = 0;
    let minCreated = Infinity;
    for (let start = 0; start < n; start += 1000) {
      if (nowMs() > tPoll + S.runTimeoutS * 1000) throw new Error('reading the jobs back took too long');
      const jobs = await queue.getJobs(['completed'], start, Math.min(n, start + 1000) - 1, true);
      for (const job of jobs) {
        lat.push(job.finishedOn - job.timestamp);
        if (job.finishedOn > maxFinish) maxFinish = job.finishedOn;
        if (job.timestamp < minCreated) minCreated = job.timestamp;
      }
    }
    if (lat.length !== n) throw new Error(`read back ${lat.length} of ${n} completed jobs`);
    Object.assign(result, summarise(lat, t0, tEnq, tPoll, maxFinish, minCreated, n), { cpu, diskBytes: dirBytes(r.dir) });
  } finally {
    if (queue) await Promise.race([queue.close(), sleep(5000)]);
    await stopChild(worker);
    await stopChild(r.child);
    if (workerErr.trim()) result.workerStderr = workerErr.trim().slice(0, 500);
    removeDir(r.dir);
  }
  return result;
}

// --- Orchestration ------------------------------------------------------------------------
async function runOne(system, workload, setting, n) {
  const label = `${system}${system === 'flow' ? ` ${setting.name}` : ''} ${workload} N=${n}`;
  try {
    const r = system === 'flow' ? await runFlow(workload, setting, n) : await runBull(workload, system === 'bullmq-aof', n);
    log(
      `${label}: ${Math.round(r.jobsPerS)} jobs/s end to end (enqueue ${Math.round(r.enqueuePerS)}/s), p50 ${r.p50Ms.toFixed(1)} ms, p99 ${r.p99Ms.toFixed(1)} ms; ` +
        `CPU system ${r.cpu.system.toFixed(0)}% driver ${r.cpu.driver.toFixed(0)}% else ${r.cpu.else === null ? 'n/a' : r.cpu.else.toFixed(0) + '%'}; load ${r.loadavg}`,
    );
    return r;
  } catch (e) {
    log(`${label}: FAILED: ${e.message}`);
    return { system, workload, n, setting: setting && setting.name, error: e.message, loadavg: loadavg() };
  }
}

async function waitQuiet() {
  const start = nowMs();
  const before = loadavg();
  log(`load average ${before}; waiting up to ${S.quietWaitS} s for the 1-minute figure to drop below ${S.quietLoad}`);
  for (let k = 0; k <= Math.ceil(S.quietWaitS / 5); k++) {
    if (os.loadavg()[0] < S.quietLoad) break;
    if (nowMs() - start >= S.quietWaitS * 1000) break;
    await sleep(5000);
  }
  const q = { before, after: loadavg(), waitedS: Math.round((nowMs() - start) / 1000), quiet: os.loadavg()[0] < S.quietLoad };
  let up = '';
  try {
    up = execFileSync('uptime').toString().trim();
  } catch {
    /* informational */
  }
  log(`${q.quiet ? 'quiet' : 'NOT quiet'} after ${q.waitedS} s: ${up || q.after}`);
  return q;
}

const median = (rs) => {
  const ok = rs.filter((r) => !r.error).sort((a, b) => a.jobsPerS - b.jobsPerS);
  return ok.length ? ok[Math.floor((ok.length - 1) / 2)] : null;
};

// --- Report -------------------------------------------------------------------------------
const num = (x) => (x === null || x === undefined || Number.isNaN(x) ? 'n/a' : Math.round(x).toLocaleString('en-US'));
const ms = (x) => (x === null || x === undefined ? 'n/a' : x < 10 ? `${x.toFixed(2)} ms` : x < 100 ? `${x.toFixed(1)} ms` : `${Math.round(x)} ms`);
const pct = (x) => (x === null || x === undefined ? 'n/a' : `${x.toFixed(0)}%`);
const yes = (b) => (b ? 'yes' : '**no**');
const mib = (b) => `${(b / 2 ** 20).toFixed(1)} MiB`;

function cpuSystemText(r) {
  const parts = Object.entries(r.cpu.parts);
  if (parts.length <= 1) return pct(r.cpu.system);
  return `${pct(r.cpu.system)} (${parts.map(([k, v]) => `${k} ${pct(v)}`).join(', ')})`;
}

function section(meta, sweep, best, runs, quiet) {
  const L = [];
  L.push(`## ${meta.date} · ${meta.commit} · queue`, '');
  L.push('| | |', '|---|---|');
  L.push('| Section type | queue: durable job queues, Flow vs BullMQ on redis-server, same run (`bench/queue`, see its README.md) |');
  L.push(`| Machine | ${meta.machine} |`);
  L.push(`| Commit | ${meta.commit} |`);
  L.push(`| Versions | Node ${process.version}; bullmq ${meta.versions.bullmq}, ioredis ${meta.versions.ioredis}; ${meta.versions.redis} (Debian package) |`);
  L.push(`| Flow binary | ${S.flowBinDesc || S.flowBin} |`);
  L.push(
    `| Flow | a fresh server and data dir per run (embedded SQLite, WAL, synchronous=NORMAL), one tenant, a key with a 100,000,000/min limit; ` +
      `\`FLOW_WORKER_CONCURRENCY=${best.concurrency} FLOW_WORKER_BATCH=${best.batch}\` (${S.flowSetting ? 'given as FLOW_SETTING' : 'best of the sweep below'}), FLOW_WORKER_POLL_MS default; ` +
      `jobs of kind \`ping\` (completes at once with \`{"pong": payload}\`) in \`${S.queue}\`, enqueued with \`POST /admin/queues/${S.queue}/jobs\`, ${num(S.batch)} per request, one request at a time |`,
  );
  L.push(
    `| BullMQ | a fresh \`redis-server --save ''\` per run, \`--appendonly no\` or \`--appendonly yes --appendfsync everysec\`; one Worker with concurrency ${S.bullConcurrency} in its own Node process, returning \`{pong: job.data}\`; ` +
      `\`Queue.addBulk\` of ${num(S.batch)} jobs at a time, one call at a time; jobs kept after completion (BullMQ's default, like Flow) |`,
  );
  L.push(
    `| Workload | N = ${num(S.n)} jobs per run; **no-op**: payload \`{}\`; **small**: a ${S.payloadBytes}-byte JSON payload, different per job; ` +
      `${S.repeat} runs of each, systems interleaved; the table shows the median run by jobs/s |`,
  );
  L.push(`| Load average | ${quiet.before} at the start; ${quiet.quiet ? `below ${S.quietLoad} after waiting ${quiet.waitedS} s` : `**still not below ${S.quietLoad} after waiting ${quiet.waitedS} s**`} (${quiet.after}); at the end ${meta.loadEnd} |`);
  L.push(`| Run | \`${S.runCommand}\` |`);
  L.push('');
  if (sweep.length) {
    L.push(`Flow worker settings, no-op jobs, N = ${num(S.sweepN)}, ${Math.max(1, S.sweepRepeat)} run(s) each, settings alternating; the best mean is used below:`, '');
    L.push('| FLOW_WORKER_CONCURRENCY × FLOW_WORKER_BATCH | jobs/s end to end, mean | runs | p50 / p99 (each run) | CPU Flow (each run) | CPU else (each run) |', '|---|--:|---|---|---|---|');
    for (const name of S.flowSweep) {
      const rs = sweep.filter((r) => r.setting === name);
      const ok = rs.filter((r) => !r.error);
      const mean = ok.length ? ok.reduce((a, r) => a + r.jobsPerS, 0) / ok.length : null;
      const fails = rs.filter((r) => r.error).map((r) => `failed: ${r.error}`);
      L.push(
        `| ${name}${name === best.name ? ' (used)' : ''} | ${num(mean)} | ${[...ok.map((r) => num(r.jobsPerS)), ...fails].join(', ')} | ${ok.map((r) => `${ms(r.p50Ms)} / ${ms(r.p99Ms)}`).join(', ')} | ${ok.map((r) => pct(r.cpu.system)).join(', ')} | ${ok.map((r) => pct(r.cpu.else)).join(', ')} |`,
      );
    }
    L.push('');
  }
  L.push(
    '| System | Workload | jobs/s end to end | range of runs | enqueue jobs/s | p50 | p99 | max | CPU system | CPU driver | CPU else | on disk after | load avg before |',
    '|---|---|--:|---|--:|--:|--:|--:|--:|--:|--:|--:|---|',
  );
  const med = {};
  for (const w of S.workloads) {
    for (const s of S.systems) {
      const rs = runs.filter((r) => r.system === s && r.workload === w);
      const m = median(rs);
      med[`${s}/${w}`] = m;
      const ok = rs.filter((r) => !r.error).map((r) => r.jobsPerS);
      const failed = rs.filter((r) => r.error);
      const range = ok.length ? `${num(Math.min(...ok))}–${num(Math.max(...ok))} (${ok.length} runs${failed.length ? `, ${failed.length} failed` : ''})` : 'n/a';
      const wname = w === 'noop' ? 'no-op' : `small (${S.payloadBytes} B)`;
      if (!m) {
        L.push(`| ${SYSTEM_NAMES[s]} | ${wname} | failed: ${failed.map((r) => r.error).join('; ')} | | | | | | | | | | |`);
        continue;
      }
      L.push(
        `| ${SYSTEM_NAMES[s]} | ${wname} | **${num(m.jobsPerS)}** | ${range} | ${num(m.enqueuePerS)} | ${ms(m.p50Ms)} | ${ms(m.p99Ms)} | ${ms(m.maxMs)} | ${cpuSystemText(m)} | ${pct(m.cpu.driver)} | ${pct(m.cpu.else)} | ${mib(m.diskBytes)} | ${m.loadavg} |`,
      );
    }
  }
  L.push('');
  // Ratios and targets.
  const ratio = (a, b) => (a && b ? a.jobsPerS / b.jobsPerS : null);
  const rtext = (x) => (x === null ? 'n/a' : `${x.toFixed(2)}x`);
  L.push('| Ratio Flow / BullMQ (jobs/s end to end) | no-op | small |', '|---|--:|--:|');
  for (const b of ['bullmq', 'bullmq-aof'].filter((s) => S.systems.includes(s))) {
    L.push(`| vs ${SYSTEM_NAMES[b]} | ${rtext(ratio(med['flow/noop'], med[`${b}/noop`]))} | ${rtext(ratio(med['flow/small'], med[`${b}/small`]))} |`);
  }
  L.push('');
  L.push('| Target | Measured | Met |', '|---|---|---|');
  for (const w of S.workloads) {
    const f = med[`flow/${w}`];
    const wname = w === 'noop' ? 'no-op' : 'small';
    L.push(`| >= 10,000 jobs/s end to end on the embedded database, ${wname} | ${f ? `${num(f.jobsPerS)} jobs/s` : 'n/a'} | ${yes(f && f.jobsPerS >= 10000)} |`);
    const bs = ['bullmq', 'bullmq-aof'].filter((s) => S.systems.includes(s));
    if (bs.length) {
      const rs = bs.map((b) => ratio(f, med[`${b}/${w}`]));
      L.push(
        `| faster than BullMQ (both redis modes), ${wname} | ${bs.map((b, i) => `${rtext(rs[i])} vs ${SYSTEM_NAMES[b].replace('BullMQ, ', '')}`).join('; ')} | ${yes(rs.every((x) => x !== null && x > 1))} |`,
      );
    }
  }
  L.push('');
  L.push(
    'Columns: **jobs/s end to end** = N / (last job finished − just before the first enqueue request), from the jobs\' own finish timestamps (Flow `finishedAt`, BullMQ `finishedOn`); ' +
      '**enqueue jobs/s** = N / time until the last enqueue request was answered; **p50/p99/max** over every job of the run: Flow `finishedAt − createdAt` (µs, read back with `GET /jobs/{id}` after the run), ' +
      'BullMQ `finishedOn − timestamp` (ms, read back with `Queue.getJobs`); **CPU** in % of one core (200% = both cores) from the first enqueue until the driver saw all N completed ' +
      `(polling every ${S.pollMs} ms: ${S.poll === 'last' ? 'Flow `GET /jobs/{last id}` until that job is finished, then `GET /admin/queues` until all N are completed' : 'Flow `GET /admin/queues`'}; BullMQ \`Queue.getJobCounts\`): the queue system (Flow's server; redis-server + the BullMQ worker process), the driver (this benchmark's Node process, which enqueues and polls) and everything else on the machine ` +
      '("else" well above a few % means other work competed with the run); **on disk after** the data dir (Flow: SQLite database + WAL; redis: the AOF directory).',
  );
  L.push(
    'Durability: Flow commits each enqueue request and each completion to SQLite in WAL mode with synchronous=NORMAL: it survives a crash of the process at once and fsyncs at checkpoints ' +
      '(an OS crash or power cut can lose the last commits), which is the guarantee class of redis `appendfsync everysec` (fsync once a second), the like-for-like peer; with AOF off redis keeps the jobs in memory only.',
  );
  const warnings = [...sweep, ...runs].filter((r) => (r.serverLog && Object.keys(r.serverLog).length) || r.workerStderr);
  if (warnings.length) {
    L.push('');
    L.push('Warnings and errors in the logs:');
    for (const r of warnings.slice(0, 10)) {
      const items = Object.entries(r.serverLog || {}).sort((a, b) => b[1] - a[1]).slice(0, 3);
      L.push(`- ${SYSTEM_NAMES[r.system]} ${r.workload}: ${items.map(([k, v]) => `${v}× \`${k.replace(/`/g, "'")}\``).join('; ')}${r.workerStderr ? ` worker stderr: \`${r.workerStderr.replace(/`/g, "'").slice(0, 200)}\`` : ''}`);
    }
  }
  L.push('');
  return L.join('\n');
}

// --- Main ---------------------------------------------------------------------------------
async function main() {
  if (S.systems.includes('flow') && !S.flowBin) throw new Error('FLOW_BIN is not set (run ./bench/queue/run.sh)');
  fs.mkdirSync(S.outDir, { recursive: true });
  let redisVersion = 'redis-server';
  try {
    redisVersion = (/v=(\S+)/.exec(execFileSync('redis-server', ['--version']).toString()) || [])[1];
    redisVersion = `redis-server ${redisVersion}`;
  } catch {
    /* recorded as unknown */
  }
  const meta = {
    date: new Date().toISOString().slice(0, 16).replace('T', ' ') + ' UTC',
    machine: `${os.cpus().length} cores, ${(os.cpus()[0]?.model || 'unknown CPU').trim()}, ${(os.totalmem() / 2 ** 30).toFixed(1)} GiB RAM`,
    commit: S.commit,
    versions: { bullmq: require('bullmq/package.json').version, ioredis: require('ioredis/package.json').version, redis: redisVersion },
  };
  log(`systems ${S.systems.join(', ')}; workloads ${S.workloads.join(', ')}; N=${S.n}; ${S.repeat} runs each`);
  const quiet = await waitQuiet();

  let best = S.flowSetting ? parseSetting(S.flowSetting) : parseSetting(S.flowSweep[0]);
  const sweep = [];
  if (S.systems.includes('flow') && !S.flowSetting && S.flowSweep.length > 1) {
    // Settings alternate within each round; the best mean jobs/s wins.
    for (let rep = 0; rep < Math.max(1, S.sweepRepeat); rep++) for (const s of S.flowSweep.map(parseSetting)) sweep.push(await runOne('flow', 'noop', s, S.sweepN));
    const means = S.flowSweep
      .map((name) => {
        const ok = sweep.filter((r) => r.setting === name && !r.error);
        return { name, mean: ok.length ? ok.reduce((a, r) => a + r.jobsPerS, 0) / ok.length : 0 };
      })
      .sort((a, b) => b.mean - a.mean);
    if (means[0].mean > 0) best = parseSetting(means[0].name);
    log(`Flow setting used: ${best.name}`);
  }
  const runs = [];
  // Systems alternate within each repetition, so background load hits all alike.
  for (let rep = 0; rep < S.repeat; rep++) for (const w of S.workloads) for (const s of S.systems) runs.push(await runOne(s, w, best, S.n));
  meta.loadEnd = loadavg();
  const text = section(meta, sweep, best, runs, quiet);
  fs.writeFileSync(path.join(S.outDir, `${RUN_STAMP}-results.json`), JSON.stringify({ meta, settings: S, quiet, best, sweep, runs }, null, 2));
  process.stdout.write(text + '\n');
  if (S.results !== '-') {
    fs.appendFileSync(S.results, '\n' + text);
    log(`appended results to ${S.results}`);
  }
}

main().then(
  () => process.exit(0),
  (e) => {
    log(`error: ${e.stack || e.message}`);
    process.exit(1);
  },
);
