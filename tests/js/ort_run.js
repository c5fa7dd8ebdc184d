// ONNX Runtime (onnxruntime-node) as the tests' oracle for graft's ONNX export:
//   node tests/js/ort_run.js MODEL.onnx IN.f32 OUT.f32 DIMS [THREADS]
// IN.f32 holds the input as raw little-endian float32 of shape DIMS
// ("2,32,32,3"); the model's first output is written to OUT.f32 the same
// way, and its shape printed. `node tests/js/ort_run.js --serve` takes the
// same arguments as lines of stdin (tests/js/serve.js). Modules come from
// js/node_modules beside the repository's root.
'use strict';
const fs = require('fs');
const path = require('path');
const serve = require('./serve');
const modules = path.join(__dirname, '..', '..', 'js', 'node_modules');

function load() {
    return require(path.join(modules, 'onnxruntime-node'));
}

async function run(ort, [model, inPath, outPath, dimsArg, threads]) {
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
    if (session.release) await session.release();
    return out.dims.join(',');
}

if (process.argv[2] === '--serve') {
    serve(load, run);
} else {
    run(load(), process.argv.slice(2)).then((dims) => console.log(dims), (e) => {
        console.error('ort_run.js: ' + (e && e.message ? e.message : e));
        process.exit(1);
    });
}
