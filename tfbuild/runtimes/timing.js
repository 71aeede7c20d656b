// The timing protocol of tfbuild/runtimes/timing.py, for TF.js: one copy, loaded by
// tfjs_run.js in Node (require) and by browser_page.js in Chromium (a <script>, as
// window.tfbuildTiming). Python hands the numbers over (Protocol.for_js):
//
//   {warmup, rounds, runsPerRound, msPerRound, warmupMaxMs, steady, firstWindow, batch}
//
// warmUp: a window of max(warmup, firstWindow) untimed calls, then windows of doubling length
// while a window's median is more than `steady` below the previous one's, for at most
// warmupMaxMs of CPU time (V8 optimizes TF.js's JavaScript over the first ~3,000 calls of a
// small model); with warmupMaxMs 0, just `warmup` calls. timeRounds: that warm-up once per
// call, then `rounds` rounds, each timing the batch-1 call and then the batch call until both
// runsPerRound calls and msPerRound are done. Calls may be async; each is awaited.
'use strict';

(function (root, factory) {
  if (typeof module === 'object' && module.exports) module.exports = factory();
  else root.tfbuildTiming = factory();
})(globalThis, function () {
  const now = () => performance.now();
  // The warm-up's budget is CPU time where the host says (Node: the process's, in ms), so
  // that a busy machine does not cut a JIT's warm-up short; a page has only the wall clock.
  const cpuNow = (typeof process === 'object' && process.cpuUsage)
    ? () => { const {user, system} = process.cpuUsage(); return (user + system) / 1000; }
    : now;

  function median(values) {
    const s = [...values].sort((a, b) => a - b);
    const mid = s.length >> 1;
    return s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
  }

  async function warmUp(call, p) {
    if (p.warmupMaxMs <= 0) {
      for (let i = 0; i < p.warmup; i++) await call();
      return;
    }
    const started = cpuNow();
    let made = 0;
    let size = Math.max(p.warmup, p.firstWindow);
    let previous = Infinity;
    for (;;) {
      const times = [];
      while (times.length < size && (made === 0 || cpuNow() - started < p.warmupMaxMs)) {
        const before = now();
        await call();
        times.push(now() - before);
      }
      made += times.length;
      if (times.length < size) return; // out of time
      const current = median(times);
      if (current >= previous * (1 - p.steady)) return;
      previous = current;
      size *= 2;
    }
  }

  async function timed(call, runs, ms) {
    const times = [];
    const started = now();
    while (times.length < runs || now() - started < ms) {
      const before = now();
      await call();
      times.push(Math.round((now() - before) * 1000) / 1000);
    }
    return times;
  }

  // -> {latency_ms: [[ms, ...] per round], batch_ms: [[ms, ...] per round]}
  async function timeRounds(latencyCall, batchCall, p) {
    await warmUp(latencyCall, p);
    await warmUp(batchCall, p);
    const figures = {latency_ms: [], batch_ms: []};
    for (let r = 0; r < p.rounds; r++) {
      figures.latency_ms.push(await timed(latencyCall, p.runsPerRound, p.msPerRound));
      figures.batch_ms.push(await timed(batchCall, p.runsPerRound, p.msPerRound));
    }
    return figures;
  }

  return {warmUp, timeRounds, median};
});
