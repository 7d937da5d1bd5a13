'use strict';
// Turns the soak's measurements into a bench/RESULTS.md section and a verdict.

const os = require('os');
const fs = require('fs');
const lib = require('./lib');

const { Histogram, ms, int, mib, counts, sum } = lib;

const OPS = [
  ['create', 'create `POST /leads`'],
  ['list', 'list `GET /leads?limit=20`'],
  ['get', 'get `GET /leads/{id}`'],
  ['status', 'status `PATCH /leads/{id}/status`'],
  ['event', 'event `LEAD_CREATED` on the socket'],
];
// The tenants whose latency the verdict judges. A shares its tenant with the abusers
// (imports, socket and voice caps per tenant), so its numbers are shown but not judged.
const JUDGED = ['B', 'C'];

const yes = (ok) => (ok ? 'yes' : '**no**');
const pct = (x) => (Number.isFinite(x) ? `${Math.round(x)}%` : 'n/a');

function byLabel(results) {
  const out = {};
  for (const r of results || []) if (r) out[r.label] = r;
  return out;
}

function cpuRow(server, clientsUs, abusersUs) {
  const hz = 100; // USER_HZ: /proc reports CPU time in 1/100 s on Linux
  const cores = os.cpus().length;
  const coreTicks = server.machineTotal / cores; // ticks one core had in the window
  if (!(coreTicks > 0)) return 'n/a';
  const flow = (100 * server.flowTicks) / coreTicks;
  const clients = (100 * clientsUs * hz) / 1e6 / coreTicks;
  const abusers = (100 * abusersUs * hz) / 1e6 / coreTicks;
  const self = (100 * server.selfUs * hz) / 1e6 / coreTicks;
  const busy = (100 * server.machineBusy) / coreTicks;
  const other = Math.max(0, busy - flow - clients - abusers - self);
  return `${pct(flow)} / ${pct(clients)} / ${pct(abusers)} / ${pct(other)}`;
}

function render(d) {
  const { cfg } = d;
  const quiet = byLabel(d.quiet);
  const abusive = byLabel(d.abusive);
  const cpuModel = (os.cpus()[0] || {}).model || 'unknown CPU';
  const memGiB = (os.totalmem() / 2 ** 30).toFixed(1);
  let wsVersion = 'unknown';
  try {
    wsVersion = JSON.parse(fs.readFileSync(`${__dirname}/node_modules/ws/package.json`, 'utf8')).version;
  } catch {
    // left as unknown
  }
  const date = new Date().toISOString().replace('T', ' ').slice(0, 16);
  const lines = [];
  const p = (s = '') => lines.push(s);

  p(`## ${date} UTC · ${cfg.commit} · soak`);
  p();
  p('| | |');
  p('|---|---|');
  p('| Section type | soak: three tenants\' well-behaved workload, quiet and then with an abusive client of each class alongside (`bench/soak`, see its README.md) |');
  p(`| Machine | ${os.cpus().length} cores, ${cpuModel}, ${memGiB} GiB RAM |`);
  p(`| Commit | ${cfg.commit} |`);
  p(`| Versions | Node ${process.version}; ws ${wsVersion} |`);
  p(`| Flow binary | ${cfg.flowBinDesc} |`);
  const where = cfg.spread ? 'each tenant and each abuser from its own loopback address (127.0.0.x)' : 'every client from 127.0.0.1 (SPREAD_ADDRS=0)';
  const nice = cfg.abuseNice ? `the abusers at nice ${cfg.abuseNice}` : 'the abusers at normal priority';
  p(`| Setup | fresh data dir (embedded SQLite), Flow's default limits; tenants A, B, C with ${int(cfg.seedLeads)} seeded leads each and a key at 1,000,000/min; per tenant ${cfg.rate} req/s of each of create, list, get and status (open loop, keep-alive, ${cfg.timeoutMs / 1000} s timeout) and one \`/events\` socket (single-use token, subscribed to LEAD_CREATED); ${where}, all to 127.0.0.1; ${nice}; open-file limit of Flow ${d.limits ? d.limits.soft : 'unknown'} |`);
  p(`| Phases | quiet: ${cfg.quietSecs} s (load avg before ${d.quietLoad}); abusive: the abusers start, ${cfg.rampSecs} s later the same workload for ${cfg.soakSecs} s (load avg before ${d.abusiveLoad}); after: ${cfg.recoverSecs} s with the abusers gone |`);
  p(`| Run | \`${cfg.runCommand}\` |`);
  p();

  // --- latency ----------------------------------------------------------------------------
  p('Well-behaved latency, counted from the scheduled send time; "event" is from sending `POST /leads` to its LEAD_CREATED on the tenant\'s socket. Errors are answers other than the expected 2xx, and requests with no answer:');
  p();
  p('| Tenant | Operation | quiet n | quiet p50 | quiet p99 | abusive n | abusive p50 | abusive p99 | p99 ratio | errors quiet | errors abusive | p99 within 2x |');
  p('|---|---|--:|--:|--:|--:|--:|--:|--:|---|---|---|');
  const failedOps = [];
  const infoOps = [];
  let judgedErrors = 0;
  let writerErrors = 0;
  const writerSamples = [];
  for (const label of ['A', 'B', 'C']) {
    for (const [op, name] of OPS) {
      const q = quiet[label]?.ops[op];
      const a = abusive[label]?.ops[op];
      const hq = Histogram.fromJSON(q?.hist);
      const ha = Histogram.fromJSON(a?.hist);
      const q99 = hq.quantileUs(0.99);
      const a99 = ha.quantileUs(0.99);
      const ratio = q99 && a99 !== null ? a99 / q99 : null;
      const ok = ratio !== null && ratio <= 2;
      const errs = (o) => {
        if (!o) return 'no result';
        const e = { ...o.errors };
        if (o.backlog) e[`client backlog (${cfg.timeoutMs / 1000} s)`] = o.backlog;
        return counts(e);
      };
      if (JUDGED.includes(label)) {
        if (!ok) failedOps.push(`${label} ${op}`);
        judgedErrors += sum(a?.errors) + (a?.backlog || 0);
      } else if (!ok) {
        infoOps.push(`${label} ${op}`);
      }
      const verdict = JUDGED.includes(label) ? (ok ? 'PASS' : '**FAIL**') : `${ok ? 'yes' : 'no'} (not judged)`;
      p(`| ${label} | ${name} | ${int(hq.n)} | ${ms(hq.quantileUs(0.5))} | ${ms(q99)} | ${int(ha.n)} | ${ms(ha.quantileUs(0.5))} | ${ms(a99)} | ${ratio === null ? 'n/a' : `${ratio.toFixed(2)}x`} | ${errs(q)} | ${errs(a)} | ${verdict} |`);
    }
  }
  for (const r of d.abusive || []) {
    if (!r) continue;
    writerErrors += r.writer.count;
    writerSamples.push(...r.writer.samples);
  }
  const notSent = ['A', 'B', 'C'].map((l) => [l, abusive[l]?.ops.status.skipped || 0]).filter(([, n]) => n > 0);
  if (notSent.length) {
    p();
    p(`Status changes not sent in the abusive phase for want of a lead to move (its creates were failing): ${notSent.map(([l, n]) => `${l} ${int(n)}`).join(', ')}.`);
  }
  p();
  const wsLine = (label, r) => {
    if (!r) return `${label}: no result`;
    const h = Histogram.fromJSON(r.ws.connectHist);
    return `${label}: ${r.ws.connects} connected (token + upgrade + welcome ${ms(h.quantileUs(0.5))}, max ${ms(h.maxUs)}), ${int(r.ws.events)} events received, closed by the server ${counts(r.ws.closes)}, refused ${counts(r.ws.refused)}`;
  };
  p(`Sockets, quiet: ${['A', 'B', 'C'].map((l) => wsLine(l, quiet[l])).join('; ')}.`);
  p();
  p(`Sockets, abusive: ${['A', 'B', 'C'].map((l) => wsLine(l, abusive[l])).join('; ')}.`);
  p();
  const loop = (rs) => ['A', 'B', 'C'].map((l) => (rs[l] ? `${l} ${ms(rs[l].loopDelayP99Us)} / ${ms(rs[l].loopDelayMaxUs)}` : `${l} n/a`)).join(', ');
  p(`Client event-loop delay p99 / max (a client that lags measures itself, not Flow): quiet ${loop(quiet)}; abusive ${loop(abusive)}.`);
  p();

  // --- the server -------------------------------------------------------------------------
  const qs = d.quietServer;
  const as = d.abusiveServer;
  const af = d.afterServer;
  const fdLimit = d.limits ? Number(d.limits.soft) : null;
  const clientsUs = (rs) => (rs || []).reduce((t, r) => t + (r ? r.cpuUs : 0), 0);
  const abusersUs = Object.values(d.abuse || {}).reduce((t, r) => t + (r ? r.cpuUs : 0), 0);
  p('The Flow process, sampled every second (`/proc/PID`):');
  p();
  p(`| | quiet | abusive | after ${cfg.recoverSecs} s |`);
  p('|---|--:|--:|--:|');
  p(`| max open fds (limit ${fdLimit ?? 'unknown'}) | ${int(qs.maxFds)} | ${int(as.maxFds)} | ${int(af.last.fds)} (at the end) |`);
  p(`| max RSS | ${mib(qs.maxRssKiB)} | ${mib(as.maxRssKiB)} | ${mib(af.last.rssKiB)} (at the end) |`);
  p(`| max threads | ${int(qs.maxThreads)} | ${int(as.maxThreads)} | ${int(af.last.threads)} |`);
  p(`| CPU Flow / well-behaved clients / abusers / else | ${cpuRow(qs, clientsUs(d.quiet), 0)} | ${cpuRow(as, clientsUs(d.abusive), abusersUs)} | |`);
  const states = (srv) => {
    const total = sum(srv.threadStates);
    if (!total) return 'n/a';
    const share = (k) => `${Math.round((100 * (srv.threadStates[k] || 0)) / total)}%`;
    return `${share('R')} / ${share('S')} / ${share('D')}`;
  };
  p(`| Flow's threads running / sleeping / in disk wait (D), every 200 ms | ${states(qs)} | ${states(as)} | ${states(af)} |`);
  const wr = (srv) => (srv.ioWriteBytes === null ? 'n/a' : `${(srv.ioWriteBytes / 2 ** 20).toFixed(0)} MiB`);
  p(`| written to storage by Flow (\`/proc/PID/io\`) | ${wr(qs)} | ${wr(as)} | ${wr(af)} |`);
  p(`| warnings and errors Flow logged | ${counts(d.quietLog, 4)} | ${counts(d.abusiveLog, 4)} | |`);
  p(`| 5xx answered to anyone (\`/metrics\`, by status and route) | ${counts(d.quietMetrics?.fivexx, 4)} | ${counts(d.abusiveMetrics?.fivexx, 4)} | |`);
  p(`| sockets dropped as slow consumers (\`/metrics\`) | ${int(d.quietMetrics?.slowConsumers)} | ${int(d.abusiveMetrics?.slowConsumers)} | |`);
  p();
  // A soak is about trends: a slow leak shows as a climb across the phase.
  const samples = as.samples;
  if (samples.length > 2) {
    const picks = [];
    for (let i = 0; i <= 10; i++) picks.push(samples[Math.min(samples.length - 1, Math.round((i * (samples.length - 1)) / 10))]);
    p(`Abusive phase over time (t from the abusers' start; the tenants from t=${cfg.rampSecs} s): ${picks.map((s) => `${Math.round(s.t)} s: ${int(s.fds)} fds, ${mib(s.rssKiB)}`).join('; ')}.`);
    p();
  }
  p(`CPU is in % of one core (${os.cpus().length * 100}% = all cores). Data dir at the end: ${(d.dataBytes / 2 ** 20).toFixed(0)} MiB. \`/health\` after the run: ${d.health}.`);
  p();

  // --- the abusers ------------------------------------------------------------------------
  p('Abusive clients (all in tenant A, each class on its own keys; connections tenant-less):');
  p();
  p('| Class | What it did | What Flow did | Expected | Met |');
  p('|---|---|---|---|---|');
  const classOk = {};
  const row = (cls, did, flow, expected, ok) => {
    classOk[cls] = ok;
    p(`| ${cls} | ${did} | ${flow} | ${expected} | ${ok === null ? 'n/a' : yes(ok)} |`);
  };
  const ab = d.abuse || {};
  const secs = cfg.rampSecs + cfg.soakSecs;
  if (ab.conns !== undefined) {
    const c = ab.conns;
    if (!c || c.crashed) row('idle connections', 'n/a', c ? `client crashed: ${c.crashed.split('\n')[0]}` : 'no result', '', false);
    else {
      const margin = cfg.headerTimeoutMs + 5000;
      for (const [kind, name, did] of [
        ['idle', 'idle connections', `${int(c.idle.slots)} connections that send nothing (${Object.keys(c.idle.maxOpenPerAddress).length} addresses), each reopened when closed: ${int(c.idle.opened)} opened`],
        ['slowloris', 'slowloris', `${int(c.slowloris.slots)} connections sending a request head one byte every ${cfg.slowlorisGapMs || 2000} ms, reopened when closed: ${int(c.slowloris.opened)} opened`],
      ]) {
        const s = c[kind];
        const tl = Histogram.fromJSON(s.timeoutLifetime);
        const el = Histogram.fromJSON(s.earlyLifetime);
        const perAddr = Object.values(s.maxOpenPerAddress);
        const over = perAddr.some((n) => n > cfg.maxPerAddress);
        const ok = s.outlived === 0 && (tl.n === 0 || tl.maxUs <= margin * 1000) && (!over || s.earlyCloses > 0) && s.opened > 0;
        row(name, did,
          `${int(tl.n)} closed by the header timeout after ${ms(tl.quantileUs(0.5))} (max ${ms(tl.maxUs)}); ${int(el.n)} closed early (refused over a cap, or reset) after ${ms(el.quantileUs(0.5))}; answers ${counts(s.answers)}; at most ${int(s.maxOpen)} open at once on the client side; ${int(s.outlived)} still open ${margin / 1000} s after connecting (the client's clock, which includes time in the listen backlog before Flow accepts); connect errors ${counts(s.connectErrors)}`,
          `closed ${cfg.headerTimeoutMs / 1000} s after opening (at most ${margin / 1000} s); more than ${int(cfg.maxPerAddress)} from one address refused`, ok);
      }
    }
  }
  if (ab.flood !== undefined) {
    const f = ab.flood;
    if (!f || f.crashed) row('socket flood', 'n/a', f ? `client crashed: ${f.crashed.split('\n')[0]}` : 'no result', '', false);
    else {
      const opens = {};
      const reuses = {};
      const mints = {};
      const closes = {};
      for (const k of f.perKey) {
        for (const [l, n] of Object.entries(k.opens)) lib.bump(opens, l, n);
        for (const [l, n] of Object.entries(k.reuses)) lib.bump(reuses, l, n);
        for (const [l, n] of Object.entries(k.mints)) lib.bump(mints, l, n);
        for (const [l, n] of Object.entries(k.closes)) lib.bump(closes, l, n);
      }
      const maxPerKey = Math.max(...f.perKey.map((k) => k.maxHeld));
      // reuses['101'] is a second socket from a token that had opened one already.
      const ok = !reuses['101'] && maxPerKey <= cfg.wsPerKey && f.maxHeldTotal <= cfg.wsPerTenant;
      row('socket flood',
        `${f.perKey.length} keys, each ${cfg.floodRate || 20} attempts/s: \`POST /events/token\`, open \`/events?token=\`, then the same token again; every socket kept open`,
        `tokens ${counts(mints)}; opens ${counts(opens)}; token reused ${counts(reuses)}; held at most ${int(maxPerKey)} per key, ${int(f.maxHeldTotal)} in all; closed by the server ${counts(closes)}`,
        `a reused token refused (401 invalid_token); at most ${cfg.wsPerKey} per key and ${int(cfg.wsPerTenant)} per tenant (429 too_many_sockets)`, ok);
    }
  }
  if (ab.import !== undefined) {
    const im = ab.import;
    if (!im || im.crashed) row('import', 'n/a', im ? `client crashed: ${im.crashed.split('\n')[0]}` : 'no result', '', false);
    else {
      const h = Histogram.fromJSON(im.duration);
      row('import',
        `\`POST /leads/import\` of ${int(cfg.importRows)} CSV rows, then poll \`GET /jobs/{id}\` each second until done; ${cfg.importLoops} loop(s), ${cfg.importPauseMs ? `${cfg.importPauseMs} ms pause between imports` : 'no pause'}`,
        `posts ${counts(im.posted)}; ${int(im.completed)} imports completed (${int(im.rowsCreated)} rows created, ${int(im.rowsFailed)} failed, ${int(im.rowsCreated / secs)} rows/s over the phase), each in ${ms(h.quantileUs(0.5))} (max ${ms(h.maxUs)}); failed jobs ${counts(im.failed)}; ${int(im.unfinished + (im.running || 0))} still running at the end; polls refused ${counts(im.polls)}`,
        'imports complete; the other tenants are not slowed (the table above)', im.completed > 0);
    }
  }
  if (ab.voice !== undefined) {
    const v = ab.voice;
    if (!v || v.crashed) row('voice', 'n/a', v ? `client crashed: ${v.crashed.split('\n')[0]}` : 'no result', '', false);
    else {
      const cap = Math.min(cfg.voiceKeys * cfg.voicePerKey, cfg.voicePerTenant);
      row('voice',
        `${cfg.voiceKeys} keys × ${cfg.voiceSessionsPerKey} \`/voice/{id}\` sessions, each \`start\` then ${cfg.voiceKibps} KiB/s of audio, never \`end\`; refused sessions retried every 5 s; ${(v.bytesSent / 2 ** 20).toFixed(0)} MiB sent`,
        `opens ${counts(v.opens)}; at most ${int(v.maxOpen)} open at once; error frames ${counts(v.frames)}; closed by the server ${counts(v.closes)}`,
        `at most ${cfg.voicePerKey} per key and ${cfg.voicePerTenant} per tenant (${cap} here; 429 too_many_sockets); audio dropped with audio_too_long / server_busy / utterance_timeout; RSS bounded (below)`,
        v.maxOpen <= cap);
    }
  }
  if (ab.search !== undefined) {
    const s = ab.search;
    if (!s || s.crashed) row('long search', 'n/a', s ? `client crashed: ${s.crashed.split('\n')[0]}` : 'no result', '', false);
    else {
      const h = Histogram.fromJSON(s.latency);
      // Refused before any search runs: too long a `q` is 422, too long a query string 400.
      const refused = (s.outcomes['422 validation_failed'] || 0) + (s.outcomes['400 invalid_query'] || 0);
      const allRefused = sum(s.outcomes) > 0 && refused === sum(s.outcomes);
      row('long search',
        `\`GET /leads?q=<${int(cfg.searchChars)} letters>\` at ${cfg.searchRate}/s (at most 16 in flight; ${int(s.ticker.skipped)} skipped as still in flight)`,
        `answers ${counts(s.outcomes)}; p50 ${ms(h.quantileUs(0.5))}, p99 ${ms(h.quantileUs(0.99))}, max ${ms(h.maxUs)}`,
        'refused, never searched (422 validation_failed or 400 invalid_query)', allRefused);
    }
  }
  if (ab.hammer !== undefined) {
    const h = ab.hammer;
    if (!h || h.crashed) row('rate-limit hammer', 'n/a', h ? `client crashed: ${h.crashed.split('\n')[0]}` : 'no result', '', false);
    else {
      const ok2xx = h.outcomes['200'] || 0;
      const budget = Math.ceil(cfg.hammerLimit + (cfg.hammerLimit * h.seconds) / 60);
      const others = sum(h.outcomes) - ok2xx - (h.outcomes['429 rate_limited'] || 0);
      row('rate-limit hammer',
        `\`GET /leads?limit=1\` at ${cfg.hammerRate}/s with a key limited to ${cfg.hammerLimit}/min, for ${Math.round(h.seconds)} s`,
        `answers ${counts(h.outcomes)}; ${int(h.missingRetryAfter)} 429s without Retry-After`,
        `at most ${int(budget)} answered 200 (the bucket plus its refill), the rest 429 rate_limited with Retry-After`,
        ok2xx <= budget && others === 0 && h.missingRetryAfter === 0);
    }
  }
  p();

  // --- verdict ----------------------------------------------------------------------------
  const fdReserve = 256;
  const fdOk = fdLimit !== null && as.maxFds < fdLimit - fdReserve
    && !Object.keys(d.abusiveLog || {}).some((m) => /accept failed|too many open files/i.test(m));
  const busyToGood = (d.abusive || []).reduce((t, r) => t + (r ? Object.entries(r.ops).reduce((u, [, o]) => u + (o.errors['503 server_busy'] || 0), 0) : 0), 0);
  const memBoundKiB = qs.maxRssKiB + (cfg.voiceBudgetMiB + cfg.memSlackMiB) * 1024;
  const memOk = as.maxRssKiB <= memBoundKiB && as.alive && af.alive;
  // Socket writers too: a judged tenant's socket closed as too slow (1013) means the
  // gateway's writers fell behind because of someone else.
  const slowDrops = JUDGED.reduce((t, l) => t + ((abusive[l]?.ws.closes || {})['1013'] || 0), 0);
  // Flow's own word for it, whoever's request it was (the abusers' included).
  const writerLogged = Object.entries(d.abusiveLog || {}).filter(([m]) => /waiting for the writer/.test(m)).reduce((t, [, n]) => t + n, 0);
  const writerOk = writerErrors === 0 && slowDrops === 0 && writerLogged === 0;
  const latencyOk = failedOps.length === 0;
  const pass = latencyOk && fdOk && busyToGood === 0 && memOk && writerOk;
  p('Verdict:');
  p();
  p(`- Well-behaved tenants' p99 within 2x of the quiet run (tenants ${JUDGED.join(' and ')}, every operation): ${latencyOk ? 'PASS' : `**FAIL** (${failedOps.join(', ')})`}. Tenant A, which the abusers share: ${infoOps.length ? `over 2x on ${infoOps.join(', ')}` : 'within 2x too'} (not judged).`);
  p(`- No fd exhaustion: ${fdOk && busyToGood === 0 ? 'PASS' : '**FAIL**'} (max ${int(as.maxFds)} open of ${fdLimit ?? 'unknown'}, ${fdReserve} kept back; ${busyToGood} \`503 server_busy\` to well-behaved clients; no "accept failed" logged: ${yes(!Object.keys(d.abusiveLog || {}).some((m) => /accept failed/i.test(m)))}).`);
  p(`- No memory exhaustion: ${memOk ? 'PASS' : '**FAIL**'} (max RSS ${mib(as.maxRssKiB)}, bound ${mib(memBoundKiB)} = the quiet run's max + the ${cfg.voiceBudgetMiB} MiB voice audio budget + ${cfg.memSlackMiB} MiB; Flow ${as.alive && af.alive ? 'alive' : '**not running**'} at the end).`);
  p(`- No writer exhaustion: ${writerOk ? 'PASS' : '**FAIL**'} (${int(writerErrors)} answers to well-behaved clients that were 503 or named the database writer${writerSamples.length ? `, e.g. ${writerSamples.slice(0, 2).map((s) => `"${s}"`).join(', ')}` : ''}; ${int(writerLogged)} "timed out waiting for the writer" in Flow's log; ${int(slowDrops)} sockets of tenants ${JUDGED.join(' and ')} closed 1013 as slow consumers).`);
  p(`- Errors seen by tenants ${JUDGED.join(' and ')} while abused: ${int(judgedErrors)}. Abusive classes as expected: ${Object.entries(classOk).map(([c, ok]) => `${c} ${ok ? 'yes' : '**no**'}`).join(', ') || 'none ran'}.`);
  p(`- Overall: ${pass ? 'PASS' : '**FAIL**'}.`);
  return { section: lines.join('\n'), pass };
}

module.exports = { render };
