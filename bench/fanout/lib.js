'use strict';
// Shared helpers: a fixed-bucket latency histogram and /proc readers.

const fs = require('fs');

// Latency histogram in microseconds: 10 µs buckets up to 100 ms, then 1 ms buckets up to
// 100 s; anything beyond lands in the last bucket (the exact maximum is kept separately).
const FINE_US = 10;
const FINE_LIMIT_US = 100_000;
const FINE_BUCKETS = FINE_LIMIT_US / FINE_US; // 10,000
const COARSE_US = 1000;
const COARSE_BUCKETS = 100_000; // up to 100 s
const BUCKETS = FINE_BUCKETS + COARSE_BUCKETS;

class Histogram {
  constructor() {
    this.counts = new Uint32Array(BUCKETS);
    this.n = 0;
    this.maxUs = 0;
    this.sumUs = 0;
  }

  record(us) {
    if (us < 0) us = 0;
    let b;
    if (us < FINE_LIMIT_US) b = Math.floor(us / FINE_US);
    else b = Math.min(BUCKETS - 1, FINE_BUCKETS + Math.floor((us - FINE_LIMIT_US) / COARSE_US));
    this.counts[b]++;
    this.n++;
    this.sumUs += us;
    if (us > this.maxUs) this.maxUs = us;
  }

  // Sparse form for IPC: [[bucket, count], ...].
  toJSON() {
    const sparse = [];
    for (let i = 0; i < BUCKETS; i++) if (this.counts[i]) sparse.push([i, this.counts[i]]);
    return { n: this.n, maxUs: this.maxUs, sumUs: this.sumUs, sparse };
  }

  merge(json) {
    for (const [i, c] of json.sparse) this.counts[i] += c;
    this.n += json.n;
    this.sumUs += json.sumUs;
    if (json.maxUs > this.maxUs) this.maxUs = json.maxUs;
  }

  // Upper edge of the bucket holding the q-quantile, in microseconds (capped at the max).
  quantileUs(q) {
    if (this.n === 0) return null;
    const rank = Math.max(1, Math.ceil(q * this.n));
    let seen = 0;
    for (let i = 0; i < BUCKETS; i++) {
      seen += this.counts[i];
      if (seen >= rank) {
        const upper = i < FINE_BUCKETS ? (i + 1) * FINE_US : FINE_LIMIT_US + (i - FINE_BUCKETS + 1) * COARSE_US;
        return Math.min(upper, this.maxUs);
      }
    }
    return this.maxUs;
  }
}

// utime + stime of a process, in clock ticks; null if it is gone.
function procTicks(pid) {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // fields[0] is field 3 (state): utime is field 14, stime field 15.
    return Number(fields[11]) + Number(fields[12]);
  } catch {
    return null;
  }
}

// Machine-wide ticks from /proc/stat: busy, total, and the part spent in interrupt and
// softirq context (loopback networking is mostly softirq, and belongs to no process).
function machineTicks() {
  const line = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0];
  // user nice system idle iowait irq softirq steal guest guest_nice; guest time is already
  // counted in user, so only the first eight add up to the total.
  const v = line.trim().split(/\s+/).slice(1, 9).map(Number);
  const total = v.reduce((a, b) => a + b, 0);
  const idle = v[3] + (v[4] || 0);
  return { busy: total - idle, total, irq: (v[5] || 0) + (v[6] || 0) };
}

// Resident set size in KiB (VmRSS, or another Rss*/Vm* field of /proc/PID/status), or null.
function rssKiB(pid, field = 'VmRSS') {
  try {
    const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : null;
  } catch {
    return null;
  }
}

// Threads of a process, or null.
function threads(pid) {
  try {
    const m = /^Threads:\s+(\d+)/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : null;
  } catch {
    return null;
  }
}

function loadavg() {
  return fs.readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
}

const hrNs = () => Number(process.hrtime.bigint());

module.exports = { Histogram, procTicks, machineTicks, rssKiB, threads, loadavg, hrNs };
