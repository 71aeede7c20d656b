#!/usr/bin/env node
// Runs a TF.js graph model (a converter output folder) in real TF.js under Node, on the
// `wasm` backend and/or the pure-JS `cpu` backend, by name: one .npy per input in, one .npy
// per output out, names as in the SavedModel signature that model.json carries.
//
//   node tfjs_run.js --model DIR --input NAME=X.npy [--input NAME=X.npy ...] --out OUTDIR
//                    [--backends wasm,cpu] [--outputs NAME,NAME] [--batch N]
//                    [--bench PROTOCOL_JSON]
//
// Samples are read, run and written --batch at a time (default 64), so memory stays bounded
// whatever the sample count. Outputs: OUTDIR/<backend>/<i>.npy, float32, i the output's
// position in the report's "outputs" list (default: every output of the signature).
//
// --bench times, per backend, calls at batch 1 (latency) and at the protocol's batch
// (throughput) in interleaved rounds, after a warm-up: timing.js, the protocol that
// tfbuild/runtimes/timing.py runs for LiteRT and TensorFlow (its Protocol.for_js writes the JSON).
//
// stdout: exactly one JSON line. Errors: one line `tfjs_run: <message>` on stderr, exit 1
// (set TFBUILD_DEBUG=1 for the stack). No tfjs-node: it downloads a native library at install
// time, so the model is read from disk here and handed to TF.js through tf.io.fromMemory.
'use strict';

const fs = require('fs');
const path = require('path');
const {NpyWriter, openNpy, readRows} = require('./npy.js');
const {timeRounds} = require('./timing.js');

const DEBUG = Boolean(process.env.TFBUILD_DEBUG);

// stdout carries one JSON line and stderr at most one `tfjs_run:` line, so what libraries log
// (TF.js hints, Emscripten's abort chatter) is dropped, or sent to stderr with TFBUILD_DEBUG.
const toStderr = (...args) => process.stderr.write(args.map(String).join(' ') + '\n');
for (const level of ['log', 'info', 'warn', 'error', 'debug']) {
  console[level] = DEBUG ? toStderr : () => {};
}

function fail(message) {
  const error = new Error(message);
  error.expected = true; // our own message: no stack needed even in debug mode
  throw error;
}

function parseArgs(argv) {
  const args = {inputs: [], backends: 'wasm', batch: '64'};
  const names = {
    '--model': 'model', '--backends': 'backends', '--out': 'out', '--outputs': 'outputs',
    '--batch': 'batch', '--bench': 'bench',
  };
  for (let i = 0; i < argv.length; i += 2) {
    if (i + 1 >= argv.length) fail(`${argv[i]} needs a value`);
    if (argv[i] === '--input') {
      // NAME=FILE: TF tensor names have no '=', so the first one ends the name.
      const at = argv[i + 1].indexOf('=');
      if (at < 1) fail(`--input wants NAME=FILE, got '${argv[i + 1]}'`);
      args.inputs.push({name: argv[i + 1].slice(0, at), file: argv[i + 1].slice(at + 1)});
      continue;
    }
    const key = names[argv[i]];
    if (key === undefined) fail(`unknown argument ${argv[i]}`);
    args[key] = argv[i + 1];
  }
  for (const required of ['model', 'out']) {
    if (args[required] === undefined) fail(`--${required} is required`);
  }
  if (args.inputs.length === 0) fail('--input is required (NAME=FILE, once per model input)');
  args.backends = args.backends.split(',').map((b) => b.trim()).filter(Boolean);
  if (args.backends.length === 0) fail('--backends is empty');
  const known = new Set(['cpu', 'wasm']);
  for (const b of args.backends) {
    if (!known.has(b)) fail(`unknown backend '${b}' (this runner has cpu and wasm)`);
  }
  if (args.outputs !== undefined) args.outputs = args.outputs.split(',').filter(Boolean);
  if (!/^[1-9]\d*$/.test(args.batch)) fail(`--batch wants a positive integer, got '${args.batch}'`);
  args.batch = Number(args.batch);
  if (args.bench !== undefined) {
    try {
      args.bench = JSON.parse(args.bench);
    } catch (e) {
      fail(`--bench wants the timing protocol as JSON (timing.py's Protocol.for_js), got '${args.bench}'`);
    }
  }
  return args;
}

// --- model loading ------------------------------------------------------------------------

function readArtifacts(dir) {
  const jsonPath = path.join(dir, 'model.json');
  if (!fs.existsSync(jsonPath)) fail(`no model.json in ${dir}`);
  let json;
  try {
    json = JSON.parse(fs.readFileSync(jsonPath, 'utf8'));
  } catch (e) {
    fail(`${jsonPath} is not valid JSON: ${e.message}`);
  }
  if (json.format !== 'graph-model') {
    fail(`${jsonPath} has format '${json.format}'; this runner loads graph models only`);
  }
  const manifest = json.weightsManifest || [];
  const weightSpecs = [];
  const shards = [];
  // Weight values are laid out shard after shard, group after group, in manifest order.
  for (const group of manifest) {
    weightSpecs.push(...group.weights);
    for (const p of group.paths) {
      const shard = path.join(dir, p);
      if (!fs.existsSync(shard)) fail(`weight shard ${p} listed in model.json is missing from ${dir}`);
      shards.push(fs.readFileSync(shard));
    }
  }
  const joined = Buffer.concat(shards);
  // A standalone ArrayBuffer: Buffer.concat may hand back a view into a larger pooled one.
  const weightData = joined.buffer.slice(joined.byteOffset, joined.byteOffset + joined.byteLength);
  return {
    modelTopology: json.modelTopology,
    weightSpecs,
    weightData,
    format: json.format,
    generatedBy: json.generatedBy,
    convertedBy: json.convertedBy,
    // The signature maps the SavedModel's input and output names to graph nodes: with it,
    // execute() takes {image: ..., meta: ...} and answers outputs asked for by name.
    signature: json.signature,
    userDefinedMetadata: json.userDefinedMetadata,
    // Hash tables etc. are built by an initializer graph; absent for plain CNNs.
    modelInitializer: json.modelInitializer,
    initializerSignature: json.initializerSignature,
  };
}

function wasmDistDir() {
  // The package's main file lives in dist/ next to the .wasm binaries; resolving it (rather
  // than using cwd or a URL) makes the wasm backend work from any current directory.
  return path.dirname(require.resolve('@tensorflow/tfjs-backend-wasm')) + path.sep;
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  const tf = require('@tensorflow/tfjs');
  if (!DEBUG) tf.enableProdMode(); // only silences TF.js's console warnings (e.g. "install tfjs-node")
  if (args.backends.includes('wasm')) {
    const wasm = require('@tensorflow/tfjs-backend-wasm');
    // Threads are off under Node in 4.22 (WASM_HAS_MULTITHREAD_SUPPORT is false when IS_NODE),
    // so the plain or SIMD binary is picked; both are read from disk with fs, no fetch.
    wasm.setWasmPaths(wasmDistDir());
  }

  const artifacts = readArtifacts(args.model);
  const inputs = args.inputs.map(({name, file}) => openNpy(name, file));
  const samples = inputs[0].shape[0];
  for (const npy of inputs) {
    if (npy.shape[0] !== samples) fail(`input '${npy.name}' has ${npy.shape[0]} samples, '${inputs[0].name}' has ${samples}`);
  }
  fs.mkdirSync(args.out, {recursive: true});

  const result = {tfjs: tf.version.tfjs, batch: args.batch, samples, backends: {}};
  for (const name of args.backends) {
    try {
      result.backends[name] = await runBackend(tf, name, args, inputs, artifacts, result);
    } catch (e) {
      e.message = `${name} backend: ${e.message}`; // which backend broke is half the diagnosis
      throw e;
    }
  }
  process.stdout.write(JSON.stringify(result) + '\n');
}

async function runBackend(tf, name, args, inputs, artifacts, result) {
  // setBackend resolves false (it does not throw) when a backend cannot start, e.g. when
  // the .wasm binary is missing; TF.js's own warning is silenced by prod mode.
  if (!(await tf.setBackend(name))) {
    fail('failed to initialize' +
         (name === 'wasm' ? ` (looked for its .wasm binaries in ${wasmDistDir()})` : ''));
  }
  await tf.ready();

  let t0 = performance.now();
  const model = await tf.loadGraphModel(tf.io.fromMemory(artifacts));
  const loadMs = performance.now() - t0;
  // With a signature these are its names; without one, graph node names.
  const missing = model.inputNodes.filter((n) => !inputs.some((npy) => npy.name === n));
  const unknown = inputs.filter((npy) => !model.inputNodes.includes(npy.name)).map((npy) => npy.name);
  if (missing.length || unknown.length) {
    fail(`the model's inputs are [${model.inputNodes}], given [${inputs.map((npy) => npy.name)}]`);
  }
  const outputNames = args.outputs || model.outputNodes;
  result.outputs = outputNames;

  // execute() is the synchronous path a web app uses for static graphs; graphs with control
  // flow or dynamic shapes throw and need executeAsync(), which in turn warns on every call
  // for static graphs. So: try execute() once, fall back for good if the graph needs it.
  let useAsync = false;
  const run = async (feed) => {
    if (!useAsync) {
      try {
        return model.execute(feed, outputNames);
      } catch (e) {
        if (!/executeAsync/.test(e.message)) throw e;
        useAsync = true;
      }
    }
    return model.executeAsync(feed, outputNames);
  };
  const feedOf = (start, count) => Object.fromEntries(inputs.map((npy) => [
    npy.name, tf.tensor(readRows(npy, start, count), [count, ...npy.shape.slice(1)], npy.dtype),
  ]));

  const folder = path.join(args.out, name);
  fs.mkdirSync(folder, {recursive: true});
  const files = Object.fromEntries(outputNames.map((o, i) => [o, path.join(folder, `${i}.npy`)]));
  const writers = outputNames.map((o) => new NpyWriter(files[o], inputs[0].shape[0]));
  let predictMs = 0;
  try {
    for (let start = 0; start < inputs[0].shape[0]; start += args.batch) {
      const count = Math.min(args.batch, inputs[0].shape[0] - start);
      const feed = feedOf(start, count);
      t0 = performance.now();
      const outputs = [].concat(await run(feed)); // one output comes back as a bare tensor
      // Reading the data waits for the backend to finish; int32 or bool outputs become float32.
      const values = await Promise.all(outputs.map((t) => t.data()));
      predictMs += performance.now() - t0;
      outputs.forEach((t, i) => writers[i].append(t.shape, Float32Array.from(values[i])));
      tf.dispose([...outputs, ...Object.values(feed)]);
    }
  } finally {
    writers.forEach((w) => w.close());
  }
  const entry = {outputs: files, load_ms: round(loadMs), predict_ms: round(predictMs)};
  if (name === 'wasm') {
    // Which binary ran: SIMD is on in Node 20; threads are never used under Node in 4.22.
    entry.simd = await tf.env().getAsync('WASM_HAS_SIMD_SUPPORT');
    entry.threads = await tf.env().getAsync('WASM_HAS_MULTITHREAD_SUPPORT');
  }
  if (args.bench) Object.assign(entry, await bench(tf, args.bench, inputs, feedOf, model, outputNames, useAsync));
  model.dispose();
  return entry;
}

async function bench(tf, protocol, inputs, feedOf, model, outputNames, useAsync) {
  // Batch 1 is the first sample; a larger batch repeats the first samples as needed.
  const have = Math.min(protocol.batch, inputs[0].shape[0]);
  const first = feedOf(0, have);
  const batchOf = (n) => Object.fromEntries(Object.entries(first).map(([k, t]) => {
    const index = tf.tensor1d(Array.from({length: n}, (_, i) => i % have), 'int32');
    const rows = tf.gather(t, index);
    index.dispose();
    return [k, rows];
  }));
  // Each timed call includes reading the results back, as an application must. Static
  // graphs on cpu and wasm run synchronously (execute + dataSync), which keeps the event
  // loop's scheduling out of the figures; graphs that need executeAsync are awaited.
  const callOn = (feed) => (useAsync
    ? async () => {
      const ys = [].concat(await model.executeAsync(feed, outputNames));
      await Promise.all(ys.map((y) => y.data()));
      tf.dispose(ys);
    }
    : () => {
      const ys = [].concat(model.execute(feed, outputNames));
      ys.forEach((y) => y.dataSync());
      tf.dispose(ys);
    });
  const one = batchOf(1);
  const many = batchOf(protocol.batch);
  try {
    return await timeRounds(callOn(one), callOn(many), protocol);
  } finally {
    tf.dispose([...Object.values(one), ...Object.values(many), ...Object.values(first)]);
  }
}

function round(ms) {
  return Math.round(ms * 1000) / 1000;
}

function report(error) {
  const message = (error && error.message) || String(error);
  if (DEBUG && error && error.stack && !error.expected) process.stderr.write(error.stack + '\n');
  if (error && error.code === 'MODULE_NOT_FOUND') {
    const root = path.resolve(__dirname, '..', '..');
    process.stderr.write(`tfjs_run: TF.js packages are not installed in ${path.join(root, 'node_modules')} (run \`make setup\`, i.e. npm ci): ${message.split('\n')[0]}\n`);
  } else {
    process.stderr.write(`tfjs_run: ${message.split('\n')[0]}\n`);
  }
  process.exitCode = 1;
}

main().catch(report);
