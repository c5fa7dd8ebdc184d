// A TensorFlow.js classifier with LeakyReLU, PReLU, ELU, Softmax and the
// other layer kinds TF.js users export, saved as TF.js saves it (model.json +
// weights.bin), with its predictions on fixed inputs: the fixture that
// tests/test_layers_tfjs.c loads into graft and compares.
// Run: node scripts/gen_fixtures_layers_tfjs.js   (js/node_modules: npm ci --ignore-scripts --prefix js)
const path = require('path');
const fs = require('fs');
const tf = require(path.join(__dirname, '..', 'js', 'node_modules', '@tensorflow', 'tfjs'));

const OUT = path.join(__dirname, '..', 'tests', 'fixtures', 'layers', 'tfjs_leaky');

async function main() {
  await tf.setBackend('cpu');
  const m = tf.sequential({name: 'leaky_classifier'});
  m.add(tf.layers.conv2d({inputShape: [8, 8, 3], filters: 4, kernelSize: 3, padding: 'same',
                          name: 'conv', kernelInitializer: tf.initializers.glorotUniform({seed: 1})}));
  m.add(tf.layers.leakyReLU({alpha: 0.2, name: 'leaky'}));
  // TF.js 4.22's SeparableConv2D does not write depth_multiplier into its config (so
  // TF.js can not load its own file back with one above 1): the default here.
  m.add(tf.layers.separableConv2d({filters: 6, kernelSize: 3, name: 'sep',
                                   depthwiseInitializer: tf.initializers.glorotUniform({seed: 2}),
                                   pointwiseInitializer: tf.initializers.glorotUniform({seed: 3}),
                                   biasInitializer: tf.initializers.randomNormal({seed: 4})}));
  m.add(tf.layers.prelu({sharedAxes: [1, 2], name: 'prelu',
                         alphaInitializer: tf.initializers.randomUniform({minval: 0.05, maxval: 0.3, seed: 5})}));
  m.add(tf.layers.upSampling2d({size: [2, 2], name: 'up'}));
  m.add(tf.layers.cropping2D({cropping: [[1, 1], [2, 0]], name: 'crop'}));
  m.add(tf.layers.elu({name: 'elu'}));
  m.add(tf.layers.maxPooling2d({poolSize: 2, padding: 'same', name: 'pool'}));
  m.add(tf.layers.globalAveragePooling2d({name: 'gap'}));
  m.add(tf.layers.dense({units: 5, name: 'logits', activation: 'linear',
                         kernelInitializer: tf.initializers.glorotUniform({seed: 6})}));
  m.add(tf.layers.softmax({name: 'probs'}));

  let artifacts;
  await m.save(tf.io.withSaveHandler(async (a) => { artifacts = a; return {modelArtifactsInfo: {}}; }));
  fs.mkdirSync(OUT, {recursive: true});
  const modelJson = {
    format: 'layers-model', generatedBy: 'TensorFlow.js tfjs-layers v' + tf.version.tfjs,
    convertedBy: null, modelTopology: artifacts.modelTopology,
    weightsManifest: [{paths: ['weights.bin'], weights: artifacts.weightSpecs}],
  };
  fs.writeFileSync(path.join(OUT, 'model.json'), JSON.stringify(modelJson));
  fs.writeFileSync(path.join(OUT, 'weights.bin'), Buffer.from(artifacts.weightData));

  // Fixed inputs in [-1, 1] and the model's outputs, as raw float32.
  const n = 3, x = new Float32Array(n * 8 * 8 * 3);
  for (let i = 0; i < x.length; i++) x[i] = Math.sin(0.37 * i + 0.1);
  const y = m.predict(tf.tensor(x, [n, 8, 8, 3])).dataSync();
  fs.writeFileSync(path.join(OUT, 'x.f32'), Buffer.from(x.buffer));
  fs.writeFileSync(path.join(OUT, 'y.f32'), Buffer.from(new Float32Array(y).buffer));
  console.log('wrote', OUT, 'layers:', m.layers.map((l) => l.getClassName()).join(', '));
}
main().catch((e) => { console.error(e); process.exit(1); });
