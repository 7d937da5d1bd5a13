'use strict';
// pg-boss worker for queue.js, in its own Node process (like BullMQ's worker in bench/queue):
// fetches batches with burstWhenBatchFull and completes each job with {pong: data}.
// Env: BOSS_URL, BOSS_QUEUE, BOSS_BATCH (batchSize), BOSS_LOCAL (localConcurrency), BOSS_POOL.
const { PgBoss } = require('pg-boss');

async function main() {
  const boss = new PgBoss({ connectionString: process.env.BOSS_URL, max: Number(process.env.BOSS_POOL || 10), schedule: false, migrate: false });
  boss.on('error', (e) => process.stderr.write(`pg-boss worker: ${e.message}\n`));
  await boss.start();
  await boss.work(
    process.env.BOSS_QUEUE,
    {
      batchSize: Number(process.env.BOSS_BATCH || 50),
      localConcurrency: Number(process.env.BOSS_LOCAL || 1),
      burstWhenBatchFull: true,
      pollingIntervalSeconds: 0.5,
    },
    async (jobs) => jobs.map((job) => ({ pong: job.data })),
  );
  process.stdout.write('ready\n');
  const shutdown = () => boss.stop({ graceful: false, wait: true }).finally(() => process.exit(0));
  process.on('SIGTERM', shutdown);
  process.on('SIGINT', shutdown);
}
main().catch((e) => {
  process.stderr.write(`pg-boss worker: ${e.stack || e.message}\n`);
  process.exit(1);
});
