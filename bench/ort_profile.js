// ONNX Runtime's own time per node, to set beside GRAFT_PROFILE=1's time per
// step: onnxruntime-node's profiler (enableProfiling) over RUNS calls of the
// model, with the session options of inference_peer.js (THREADS intra-op
// threads, all graph optimisations, sequential execution). Prints one line
// per node in execution order: its median milliseconds over the calls, its operator
// (after ORT's fusions: a Conv may carry its Relu, Clip or Add) and its name,
// then the sum. The profiler's JSON goes to a temporary folder, removed after.
// usage: node ort_profile.js MODEL.onnx SIZE BATCH [THREADS] [RUNS]
// (MODEL.onnx: an export bench_inference.sh left in its cache, NCHW input)
'use strict';
const fs = require('fs');
const os = require('os');
const path = require('path');
const ort = require(path.join(__dirname, '..', 'js', 'node_modules', 'onnxruntime-node'));

async function main() {
  const [file, sizeArg, batchArg, threadsArg, runsArg] = process.argv.slice(2);
  if (!file || !sizeArg || !batchArg) {
    console.error('usage: node ort_profile.js MODEL.onnx SIZE BATCH [THREADS] [RUNS]');
    process.exit(2);
  }
  const size = parseInt(sizeArg, 10), batch = parseInt(batchArg, 10);
  const threads = threadsArg ? parseInt(threadsArg, 10) : 2;
  const runs = runsArg ? parseInt(runsArg, 10) : (batch > 1 ? 10 : 100);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ort_profile_'));
  try {
    const session = await ort.InferenceSession.create(file, {
      intraOpNumThreads: threads,
      interOpNumThreads: 1,
      graphOptimizationLevel: 'all',
      executionMode: 'sequential',
      enableProfiling: true,
      profileFilePrefix: path.join(dir, 'profile'),
    });
    const data = new Float32Array(batch * 3 * size * size).fill(0.5);
    const feeds = {[session.inputNames[0]]: new ort.Tensor('float32', data, [batch, 3, size, size])};
    for (let i = 0; i < runs; i++) await session.run(feeds);
    session.endProfiling();
    const json = fs.readdirSync(dir).filter((f) => f.endsWith('.json'));
    if (json.length !== 1) throw new Error(`expected one profile in ${dir}, found ${json.length}`);
    const events = JSON.parse(fs.readFileSync(path.join(dir, json[0]), 'utf8'));
    const nodes = new Map(); // name -> {us: [per call], op}, in first-seen order
    for (const e of events) {
      if (e.cat !== 'Node' || !e.name.endsWith('_kernel_time')) continue;
      const name = e.name.slice(0, -'_kernel_time'.length);
      const n = nodes.get(name) || {us: [], op: (e.args && e.args.op_name) || '?'};
      n.us.push(e.dur);
      nodes.set(name, n);
    }
    let sum = 0;
    for (const [name, n] of nodes) {
      // the median call: the first one also grows ORT's arena, several times over
      const us = n.us.slice().sort((a, b) => a - b);
      const ms = us[Math.floor(us.length / 2)] / 1e3;
      sum += ms;
      console.log(`${ms.toFixed(3).padStart(9)} ms  ${n.op.padEnd(14)} ${name}`);
    }
    console.log(`${sum.toFixed(3).padStart(9)} ms  total over ${nodes.size} nodes (${runs} calls, ${threads} threads)`);
  } finally {
    fs.rmSync(dir, {recursive: true, force: true});
  }
}

main().catch((e) => {
  console.error(`ort_profile.js: ${e.message}`);
  process.exit(1);
});
