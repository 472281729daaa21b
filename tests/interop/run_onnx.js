#!/usr/bin/env node
// Runs an ONNX model in ONNX Runtime (the onnxruntime-node package) for tests/interop:
//   node run_onnx.js ORT_NODE_DIR MODEL.onnx INPUT.f32 DIMS OUTPUT.f32 [OPTIMIZED.onnx]
// INPUT.f32 holds float32 values (little-endian) of shape DIMS ("8,1,28,28"); the first output
// is written the same way to OUTPUT.f32 and its shape printed as JSON on stdout. With
// OPTIMIZED.onnx, ORT also writes the graph it runs after its extended (level 2) optimizations,
// where QDQ groups become int8 kernels (QLinearConv, ...), so a test can check which it chose.
'use strict';
const fs = require('fs');
const path = require('path');

async function main() {
  const [ortDir, modelPath, inputPath, dimsText, outputPath, optimizedPath] = process.argv.slice(2);
  if (!outputPath) {
    throw new Error('usage: run_onnx.js ORT_NODE_DIR MODEL INPUT DIMS OUTPUT [OPTIMIZED]');
  }
  const ort = require(path.resolve(ortDir, 'node_modules', 'onnxruntime-node'));
  const dims = dimsText.split(',').map(Number);
  const bytes = fs.readFileSync(inputPath);
  const data = new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4);
  // One thread: the tests share two cores, and results must not depend on the split.
  const common = {intraOpNumThreads: 1, interOpNumThreads: 1};
  const session = await ort.InferenceSession.create(modelPath, common);
  const feeds = {[session.inputNames[0]]: new ort.Tensor('float32', data.slice(), dims)};
  const result = await session.run(feeds);
  const out = result[session.outputNames[0]];
  fs.writeFileSync(outputPath, Buffer.from(out.data.buffer, out.data.byteOffset, out.data.byteLength));
  if (optimizedPath) {
    await ort.InferenceSession.create(modelPath, {
      ...common,
      graphOptimizationLevel: 'extended',
      optimizedModelFilePath: optimizedPath,
    });
  }
  console.log(JSON.stringify({output: session.outputNames[0], dims: out.dims}));
}

main().catch((e) => {
  console.error('run_onnx.js: ' + (e && e.message ? e.message : e));
  process.exit(1);
});
