'use strict';
// The writer process: POSTs leads at a fixed rate (open loop) to the server under test,
// each carrying its send time, the phase and its index in `notes`. Same requests for Flow and for the socket.io
// peer (whose tiny HTTP endpoint broadcasts the lead to the room). Started by bench.js with
// child_process.fork; each 'run' message is one timed phase.

const http = require('http');
const { Histogram, hrNs } = require('./lib');

// Requests still waiting for a socket beyond this are not sent (counted as `skipped`):
// keeps memory bounded when the server cannot keep up.
const MAX_QUEUED = 2000;

function run(msg) {
  return new Promise((resolve) => {
    const url = new URL('/leads', msg.url);
    const agent = new http.Agent({ keepAlive: true, maxSockets: msg.maxSockets || 64 });
    const total = Math.max(1, Math.round(msg.rate * msg.durationS));
    const intervalNs = 1e9 / msg.rate;
    const post = new Histogram();
    const lag = new Histogram();
    const statuses = {};
    const errors = {};
    let sent = 0;
    let skipped = 0;
    let answered = 0;
    let ok = 0;
    let inFlight = 0;
    let firstNs = 0;
    let lastSendNs = 0;
    let finished = false;

    const start = hrNs() + 5e6; // first send 5 ms from now
    const sendDeadline = start + msg.durationS * 1e9 + 1e9; // never send more than 1 s late

    function send(i, nowNs) {
      if (inFlight >= MAX_QUEUED) {
        skipped++;
        return;
      }
      const body = JSON.stringify({
        firstName: 'Bench',
        email: 'fanout@example.com',
        notes: `t=${process.hrtime.bigint()};p=${msg.phase};i=${i}`,
      });
      const t0 = hrNs();
      if (!firstNs) firstNs = t0;
      lastSendNs = t0;
      lag.record((nowNs - (start + i * intervalNs)) / 1000);
      sent++;
      inFlight++;
      const req = http.request(
        url,
        {
          method: 'POST',
          agent,
          headers: {
            'x-tenant-key': msg.key,
            'content-type': 'application/json',
            'content-length': Buffer.byteLength(body),
          },
        },
        (res) => {
          res.resume();
          res.on('end', () => {
            inFlight--;
            answered++;
            statuses[res.statusCode] = (statuses[res.statusCode] || 0) + 1;
            if (res.statusCode >= 200 && res.statusCode < 300) ok++;
            post.record((hrNs() - t0) / 1000);
            maybeDone();
          });
        },
      );
      req.setTimeout(10_000, () => req.destroy(new Error('request timeout (10 s)')));
      req.on('error', (e) => {
        inFlight--;
        const k = e.code || e.message;
        errors[k] = (errors[k] || 0) + 1;
        maybeDone();
      });
      req.end(body);
    }

    let next = 0;
    let sendingDone = false;
    function tick() {
      const now = hrNs();
      const due = Math.min(total, Math.floor((now - start) / intervalNs) + 1);
      while (next < due && now < sendDeadline) send(next++, now);
      if (next < total && now < sendDeadline) {
        const wait = (start + next * intervalNs - hrNs()) / 1e6;
        setTimeout(tick, Math.max(0, wait));
      } else {
        skipped += total - next;
        sendingDone = true;
        // Waiting for the answers is bounded too: 15 s after the last send.
        setTimeout(() => finish('answers still missing 15 s after the last send'), 15_000).unref();
        maybeDone();
      }
    }
    function maybeDone() {
      if (sendingDone && inFlight === 0) finish(null);
    }
    function finish(note) {
      if (finished) return;
      finished = true;
      agent.destroy();
      resolve({
        rate: msg.rate,
        durationS: msg.durationS,
        planned: total,
        sent,
        skipped,
        answered,
        ok,
        statuses,
        errors,
        unanswered: inFlight,
        note,
        firstNs,
        lastSendNs,
        achievedRate: sent > 1 ? ((sent - 1) * 1e9) / (lastSendNs - firstNs) : sent,
        post: post.toJSON(),
        lag: lag.toJSON(),
      });
    }
    setTimeout(tick, 5);
  });
}

process.on('message', async (msg) => {
  if (msg.cmd === 'run') process.send({ re: 'run', ...(await run(msg)) });
  else if (msg.cmd === 'exit') process.exit(0);
});
process.on('disconnect', () => process.exit(0));
