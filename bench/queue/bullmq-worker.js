'use strict';
// The BullMQ side's worker process: one Worker on the bench queue, answering each job
// like Flow's `ping` (`{ pong: payload }`). Started by bench.js before the jobs are
// added; prints "ready" once connected and stops on SIGTERM.
//
// Environment: REDIS_PORT, QUEUE, CONCURRENCY.
const { Worker } = require('bullmq');

const port = Number(process.env.REDIS_PORT);
const queue = process.env.QUEUE || 'lead-processing';
const concurrency = Number(process.env.CONCURRENCY || 50);
if (!port) {
  console.error('REDIS_PORT is not set');
  process.exit(2);
}

const worker = new Worker(queue, async (job) => ({ pong: job.data }), {
  connection: { host: '127.0.0.1', port, maxRetriesPerRequest: null },
  concurrency,
});
worker.on('error', (e) => console.error(`worker error: ${e.message}`));
worker.on('failed', (job, e) => console.error(`job ${job && job.id} failed: ${e.message}`));

let stopping = false;
async function stop() {
  if (stopping) return;
  stopping = true;
  // Bounded: a worker that cannot close in 5 s is left to the process exit.
  const timer = setTimeout(() => process.exit(0), 5000);
  try {
    await worker.close();
  } finally {
    clearTimeout(timer);
    process.exit(0);
  }
}
process.on('SIGTERM', stop);
process.on('SIGINT', stop);

worker.waitUntilReady().then(
  () => console.log('ready'),
  (e) => {
    console.error(`worker could not connect: ${e.message}`);
    process.exit(1);
  },
);
