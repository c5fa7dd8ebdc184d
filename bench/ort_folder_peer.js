// The peer of `graft predict` over a folder (bench/bench_predict_folder.sh):
// the same job done with ONNX Runtime (onnxruntime-node, INTRA intra-op
// threads, all graph optimisations) on graft's export, and sharp (libvips,
// from npm) decoding and resizing each image to 224x224 with its linear
// (antialiased, as Pillow's bilinear) kernel. Batches of BATCH images; while
// ORT runs one batch, sharp decodes the next on libuv's threads. Each image's
// top class is printed as one JSON line, as `graft predict --json --top 1`.
// sharp's defaults ran fastest here (one thread per image and no cache, or
// two libuv threads, ran slower); ORT's threads do not spin between runs,
// which leaves the cores to the decoding (faster by about 5%).
//   node bench/ort_folder_peer.js MODEL.onnx BATCH INTRA PREPROCESS LIST
// LIST: a file naming one image per line (onnxruntime-node 1.30 crashes in
// a process whose command line is long, as a thousand paths make it).
// PREPROCESS: "tf" (x / 127.5 - 1, MobileNet's), "caffe" or "torch".
'use strict';
const fs = require('fs');
const path = require('path');
const modules = path.join(__dirname, '..', 'js', 'node_modules');
const ort = require(path.join(modules, 'onnxruntime-node'));
const sharp = require(path.join(modules, 'sharp'));

const SIZE = 224;
const CAFFE_MEAN = [103.939, 116.779, 123.68];
const TORCH_MEAN = [0.485, 0.456, 0.406], TORCH_STD = [0.229, 0.224, 0.225];

// Keras's preprocess_input on one RGB image of bytes, into x at `at`.
function preprocess(mode, px, x, at) {
    const n = SIZE * SIZE;
    if (mode === 'tf') {
        for (let i = 0; i < 3 * n; i++) x[at + i] = px[i] / 127.5 - 1;
    } else if (mode === 'caffe') { // BGR, mean subtracted
        for (let i = 0; i < n; i++) {
            x[at + 3 * i] = px[3 * i + 2] - CAFFE_MEAN[0];
            x[at + 3 * i + 1] = px[3 * i + 1] - CAFFE_MEAN[1];
            x[at + 3 * i + 2] = px[3 * i] - CAFFE_MEAN[2];
        }
    } else {
        for (let i = 0; i < 3 * n; i++) x[at + i] = (px[i] / 255 - TORCH_MEAN[i % 3]) / TORCH_STD[i % 3];
    }
}

function decodeBatch(files) {
    return Promise.all(files.map((f) => sharp(f).removeAlpha().toColourspace('srgb')
        .resize(SIZE, SIZE, {fit: 'fill', kernel: 'linear'}).raw().toBuffer()));
}

async function main() {
    const [model, batchArg, intraArg, mode, list] = process.argv.slice(2);
    const batch = Number(batchArg);
    if (!['tf', 'caffe', 'torch'].includes(mode)) throw new Error(`preprocessing ${mode} is not tf, caffe or torch`);
    const files = fs.readFileSync(list, 'utf8').split('\n').filter((f) => f.length);
    const s = await ort.InferenceSession.create(model, {
        intraOpNumThreads: Number(intraArg || 2), interOpNumThreads: 1,
        graphOptimizationLevel: 'all', executionMode: 'sequential',
        extra: {session: {intra_op: {allow_spinning: '0'}}},
    });
    const out = [];
    let next = decodeBatch(files.slice(0, batch));
    for (let first = 0; first < files.length; first += batch) {
        const names = files.slice(first, first + batch);
        const pixels = await next;
        if (first + batch < files.length) next = decodeBatch(files.slice(first + batch, first + 2 * batch));
        // The export has a fixed batch: a short last batch is padded.
        const x = new Float32Array(batch * SIZE * SIZE * 3);
        pixels.forEach((px, i) => preprocess(mode, px, x, i * SIZE * SIZE * 3));
        const r = await s.run({[s.inputNames[0]]: new ort.Tensor('float32', x, [batch, SIZE, SIZE, 3])});
        const y = r[s.outputNames[0]].data, classes = y.length / batch;
        names.forEach((name, i) => {
            let best = 0;
            for (let c = 1; c < classes; c++) if (y[i * classes + c] > y[i * classes + best]) best = c;
            out.push(JSON.stringify({image: name, top: [{index: best, probability: y[i * classes + best]}]}));
        });
    }
    process.stdout.write(out.join('\n') + '\n');
}

main().catch((e) => {
    console.error('ort_folder_peer.js: ' + e.message);
    process.exit(1);
});
