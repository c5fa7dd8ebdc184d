// ONNX Runtime (onnxruntime-node) as the tests' oracle for graft's ONNX export:
//   node tests/js/ort_run.js MODEL.onnx IN.f32 OUT.f32 DIMS [THREADS]
// IN.f32 holds the input as raw little-endian float32 of shape DIMS
// ("2,32,32,3"); the model's first output is written to OUT.f32 the same
// way. Modules come from js/node_modules beside the repository's root.
'use strict';
const fs = require('fs');
const path = require('path');
const modules = path.join(__dirname, '..', '..', 'js', 'node_modules');
const ort = require(path.join(modules, 'onnxruntime-node'));

async function main() {
    const [model, inPath, outPath, dimsArg, threads] = process.argv.slice(2);
    if (!dimsArg) throw new Error('usage: ort_run.js MODEL.onnx IN.f32 OUT.f32 DIMS [THREADS]');
    const dims = dimsArg.split(',').map(Number);
    const buf = fs.readFileSync(inPath);
    const data = new Float32Array(buf.buffer, buf.byteOffset, buf.byteLength / 4);
    const session = await ort.InferenceSession.create(model, {
        intraOpNumThreads: Number(threads || 1),
        interOpNumThreads: 1,
        graphOptimizationLevel: 'all',
    });
    const feeds = {[session.inputNames[0]]: new ort.Tensor('float32', Float32Array.from(data), dims)};
    const out = (await session.run(feeds))[session.outputNames[0]];
    fs.writeFileSync(outPath, Buffer.from(out.data.buffer, out.data.byteOffset, out.data.byteLength));
    console.log(out.dims.join(','));
}

main().catch((e) => {
    console.error('ort_run.js: ' + (e && e.message ? e.message : e));
    process.exit(1);
});
