// TensorFlow.js (@tensorflow/tfjs, pure JavaScript) as the tests' oracle for
// graft's TF.js export:
//   node tests/js/tfjs_run.js MODEL_DIR IN.f32 OUT.f32 DIMS
// loads MODEL_DIR/model.json with tf.loadLayersModel through a file IO
// handler (model.json and its shards read from disk), predicts on IN.f32 (raw
// little-endian float32 of shape DIMS, "2,32,32,3") and writes the output to
// OUT.f32 the same way, and prints its shape. `node tests/js/tfjs_run.js
// --serve` takes the same arguments as lines of stdin (tests/js/serve.js).
// Modules come from js/node_modules.
'use strict';
const fs = require('fs');
const path = require('path');
const serve = require('./serve');
const modules = path.join(__dirname, '..', '..', 'js', 'node_modules');
// tfjs suggests its native backend on the console when it starts: not here
// (the replies go to stdout directly).
console.log = console.warn = () => {};

function load() {
    return require(path.join(modules, '@tensorflow', 'tfjs'));
}

function fileHandler(dir) {
    return {
        load: async () => {
            const mj = JSON.parse(fs.readFileSync(path.join(dir, 'model.json'), 'utf8'));
            const specs = [], parts = [];
            for (const g of mj.weightsManifest) {
                specs.push(...g.weights);
                for (const p of g.paths) parts.push(fs.readFileSync(path.join(dir, p)));
            }
            const all = Buffer.concat(parts);
            return {
                modelTopology: mj.modelTopology, weightSpecs: specs, format: mj.format,
                generatedBy: mj.generatedBy, convertedBy: mj.convertedBy,
                weightData: all.buffer.slice(all.byteOffset, all.byteOffset + all.byteLength),
            };
        },
    };
}

async function run(tf, [dir, inPath, outPath, dimsArg]) {
    if (!dimsArg) throw new Error('usage: tfjs_run.js MODEL_DIR IN.f32 OUT.f32 DIMS');
    await tf.setBackend('cpu');
    const model = await tf.loadLayersModel(fileHandler(dir));
    const buf = fs.readFileSync(inPath);
    const x = tf.tensor(new Float32Array(buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength)),
                        dimsArg.split(',').map(Number));
    const y = model.predict(x);
    const data = await y.data();
    fs.writeFileSync(outPath, Buffer.from(data.buffer, data.byteOffset, data.byteLength));
    const shape = y.shape.join(',');
    tf.dispose([x, y]);
    model.dispose();
    return shape;
}

if (process.argv[2] === '--serve') {
    serve(load, run);
} else {
    run(load(), process.argv.slice(2)).then((shape) => process.stdout.write(shape + '\n'), (e) => {
        console.error('tfjs_run.js: ' + (e && e.message ? e.message : e));
        process.exit(1);
    });
}
