// ONNX Runtime peer for bench_inference.sh: the ONNX export of the same
// network (inference_export.py) run by onnxruntime-node, as a deployer
// would: INTRA intra-op threads, one inter-op thread, all graph
// optimisations, sequential execution. Each call is timed on its own and
// the median call reported, as graft's side does.
// usage: node inference_peer.js MODEL.onnx ARCH SIZE BATCH [SECONDS] [THREADS]
// prints: onnxruntime ARCH SIZE BATCH MEDIAN_MS ms IMG_PER_S img/s CPU_MS cpu_ms
// (CPU_MS: the process's CPU time per timed call, all threads, as graft's side)
'use strict';
const path = require('path');
const ort = require(path.join(__dirname, '..', 'js', 'node_modules', 'onnxruntime-node'));

async function main() {
  const [file, arch, sizeArg, batchArg, secondsArg, threadsArg] = process.argv.slice(2);
  const size = parseInt(sizeArg, 10), batch = parseInt(batchArg, 10);
  const seconds = secondsArg ? parseFloat(secondsArg) : 3;
  const threads = threadsArg ? parseInt(threadsArg, 10) : 2;
  const session = await ort.InferenceSession.create(file, {
    intraOpNumThreads: threads,
    interOpNumThreads: 1,
    graphOptimizationLevel: 'all',
    executionMode: 'sequential',
  });
  const data = new Float32Array(batch * 3 * size * size);
  let s = 1;
  for (let i = 0; i < data.length; i++) { // any numbers in [-1, 1): the time does not depend on them
    s = (s * 1103515245 + 12345) % 2147483648;
    data[i] = 2 * s / 2147483648 - 1;
  }
  const feeds = {[session.inputNames[0]]: new ort.Tensor('float32', data, [batch, 3, size, size])};
  for (let w = 0; w < 2; w++) await session.run(feeds);
  const times = [];
  const c0 = process.cpuUsage();
  const t0 = process.hrtime.bigint();
  let t = 0;
  do {
    const a = process.hrtime.bigint();
    await session.run(feeds);
    const b = process.hrtime.bigint();
    times.push(Number(b - a) / 1e9);
    t = Number(b - t0) / 1e9;
  } while (t < seconds || times.length < 3);
  const cpu = process.cpuUsage(c0);
  const cpuMs = (cpu.user + cpu.system) / 1e3 / times.length;
  times.sort((x, y) => x - y);
  const n = times.length;
  const med = n % 2 ? times[(n - 1) / 2] : 0.5 * (times[n / 2 - 1] + times[n / 2]);
  console.log(`onnxruntime ${arch} ${size} ${batch} ${(1e3 * med).toFixed(3)} ms ${(batch / med).toFixed(2)} img/s ${cpuMs.toFixed(3)} cpu_ms`);
}

main().catch((e) => {
  console.error(`inference_peer.js: ${e.message}`);
  process.exit(1);
});
