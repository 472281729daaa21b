#!/usr/bin/env node
// Accuracy of an exported ONNX model in ONNX Runtime on the Fashion-MNIST test split, to set
// beside `mcompress eval` (docs/interop.md):
//   node scripts/ort_eval.js MODEL.onnx [DATA_DIR] [LIMIT]
// DATA_DIR holds t10k-{images-idx3,labels-idx1}-ubyte[.gz] (default: Debian's
// dataset-fashion-mnist); images are fed as mcompress feeds them: float32 in [0, 1].
// Needs the onnxruntime-node package that scripts/setup.sh installs in third_party/.
'use strict';
const fs = require('fs');
const path = require('path');
const zlib = require('zlib');
const ort = require(path.resolve(__dirname, '..', 'third_party', 'onnxruntime-node',
                                 'node_modules', 'onnxruntime-node'));

function readIdx(dir, name) {
  const plain = path.join(dir, name);
  const bytes = fs.existsSync(plain) ? fs.readFileSync(plain) : fs.readFileSync(plain + '.gz');
  return bytes[0] === 0x1f && bytes[1] === 0x8b ? zlib.gunzipSync(bytes) : bytes;
}

async function main() {
  const [model, dir = '/usr/share/datasets/fashion-mnist', limitText = '0'] =
      process.argv.slice(2);
  if (!model) throw new Error('usage: ort_eval.js MODEL.onnx [DATA_DIR] [LIMIT]');
  const images = readIdx(dir, 't10k-images-idx3-ubyte');
  const labels = readIdx(dir, 't10k-labels-idx1-ubyte');
  let n = images.readUInt32BE(4);
  const limit = Number(limitText);
  if (limit > 0 && limit < n) n = limit;
  const session = await ort.InferenceSession.create(model);
  const batch = 256;
  let correct = 0;
  for (let b = 0; b < n; b += batch) {
    const m = Math.min(batch, n - b);
    const x = new Float32Array(m * 784);
    for (let i = 0; i < m * 784; ++i) x[i] = images[16 + b * 784 + i] / 255;
    const out = await session.run({[session.inputNames[0]]: new ort.Tensor('float32', x, [m, 1, 28, 28])});
    const logits = out[session.outputNames[0]].data;
    const classes = logits.length / m;
    for (let i = 0; i < m; ++i) {
      let best = 0;
      for (let c = 1; c < classes; ++c) {
        if (logits[i * classes + c] > logits[i * classes + best]) best = c;
      }
      correct += best === labels[8 + b + i] ? 1 : 0;
    }
  }
  console.log(`${path.basename(model)}: ONNX Runtime ${ort.env.versions.common}, ${n} test ` +
              `images, accuracy ${(100 * correct / n).toFixed(2)}%`);
}

main().catch((e) => {
  console.error('ort_eval.js: ' + (e && e.message ? e.message : e));
  process.exit(1);
});
