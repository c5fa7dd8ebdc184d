// The peer of bench/bench_export_ort.c: ONNX Runtime (onnxruntime-node) on an
// ONNX file with NHWC float input, INTRA intra-op threads and all graph
// optimisations; prints the median milliseconds of one run at batch BATCH
// over about SECONDS (after warm-up runs; session creation not counted).
//   node bench/ort_peer.js MODEL.onnx BATCH SECONDS INTRA
'use strict';
const path = require('path');
const ort = require(path.join(__dirname, '..', 'js', 'node_modules', 'onnxruntime-node'));

async function main() {
    const [model, batchArg, secArg, intraArg] = process.argv.slice(2);
    const batch = Number(batchArg), seconds = Number(secArg || 3);
    const s = await ort.InferenceSession.create(model, {
        intraOpNumThreads: Number(intraArg || 2), interOpNumThreads: 1,
        graphOptimizationLevel: 'all', executionMode: 'sequential',
    });
    const dims = [batch, 224, 224, 3];
    const x = new Float32Array(dims.reduce((a, b) => a * b));
    for (let i = 0; i < x.length; i++) x[i] = ((i * 2654435761) % 1000) / 500 - 1;
    const feeds = {[s.inputNames[0]]: new ort.Tensor('float32', x, dims)};
    for (let i = 0; i < 2; i++) await s.run(feeds);
    const t = [];
    const start = process.hrtime.bigint();
    while (t.length < 3 || (Number(process.hrtime.bigint() - start) / 1e9 < seconds && t.length < 100000)) {
        const t0 = process.hrtime.bigint();
        await s.run(feeds);
        t.push(Number(process.hrtime.bigint() - t0) / 1e6);
    }
    t.sort((a, b) => a - b);
    const n = t.length;
    console.log((n % 2 ? t[(n - 1) / 2] : (t[n / 2 - 1] + t[n / 2]) / 2).toFixed(3));
}

main().catch((e) => {
    console.error('ort_peer.js: ' + e.message);
    process.exit(1);
});
