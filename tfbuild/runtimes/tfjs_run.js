#!/usr/bin/env node
// Runs a TF.js graph model (a converter output folder) in real TF.js under Node, on the
// pure-JS `cpu` backend and/or the `wasm` backend, and writes each backend's output as .npy.
//
//   node tfjs_run.js --model DIR --input X.npy --backends cpu,wasm --out OUTDIR
//                    [--output-name probabilities] [--input-name inputs]
//                    [--bench WARMUP,MIN_RUNS,MIN_MS,BATCH]
//
// --bench times, per backend, calls at batch 1 (latency) and at BATCH (throughput): WARMUP
// untimed calls, then timed ones until both MIN_RUNS calls and MIN_MS milliseconds are done
// (tfbuild/runtimes/timing.py runs the same protocol for LiteRT and TensorFlow).
//
// stdout: exactly one JSON line. Errors: one line `tfjs_run: <message>` on stderr, exit 1
// (set TFBUILD_DEBUG=1 for the stack). No tfjs-node: it downloads a native library at install
// time, so the model is read from disk here and handed to TF.js through tf.io.fromMemory.
'use strict';

const fs = require('fs');
const path = require('path');

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
  const args = {outputName: 'probabilities', inputName: 'inputs', backends: 'cpu,wasm'};
  const names = {
    '--model': 'model', '--input': 'input', '--backends': 'backends', '--out': 'out',
    '--output-name': 'outputName', '--input-name': 'inputName', '--bench': 'bench',
  };
  for (let i = 0; i < argv.length; i += 2) {
    const key = names[argv[i]];
    if (key === undefined) fail(`unknown argument ${argv[i]}`);
    if (i + 1 >= argv.length) fail(`${argv[i]} needs a value`);
    args[key] = argv[i + 1];
  }
  for (const required of ['model', 'input', 'out']) {
    if (args[required] === undefined) fail(`--${required} is required`);
  }
  args.backends = args.backends.split(',').map((b) => b.trim()).filter(Boolean);
  if (args.backends.length === 0) fail('--backends is empty');
  const known = new Set(['cpu', 'wasm']);
  for (const b of args.backends) {
    if (!known.has(b)) fail(`unknown backend '${b}' (this runner has cpu and wasm)`);
  }
  if (args.bench !== undefined) {
    const m = /^(\d+),(\d+),(\d+(?:\.\d+)?),(\d+)$/.exec(args.bench);
    if (!m || Number(m[2]) < 1 || Number(m[4]) < 1) {
      fail(`--bench wants WARMUP,MIN_RUNS,MIN_MS,BATCH (e.g. 10,50,200,32), got '${args.bench}'`);
    }
    args.bench = {warmup: Number(m[1]), minRuns: Number(m[2]), minMs: Number(m[3]), batch: Number(m[4])};
  }
  return args;
}

// --- .npy (format 1.0/2.0/3.0), float32 little-endian C order only ------------------------

function readNpy(file) {
  const buf = fs.readFileSync(file);
  if (buf.length < 10 || buf.readUInt8(0) !== 0x93 || buf.toString('latin1', 1, 6) !== 'NUMPY') {
    fail(`${file} is not a .npy file`);
  }
  const major = buf.readUInt8(6);
  const headerLen = major === 1 ? buf.readUInt16LE(8) : buf.readUInt32LE(8);
  const start = major === 1 ? 10 : 12;
  const header = buf.toString('latin1', start, start + headerLen);
  const descr = /'descr':\s*'([^']*)'/.exec(header);
  const fortran = /'fortran_order':\s*(True|False)/.exec(header);
  const shape = /'shape':\s*\(([^)]*)\)/.exec(header);
  if (!descr || !fortran || !shape) fail(`${file}: unreadable .npy header ${header.trim()}`);
  if (descr[1] !== '<f4') fail(`${file}: dtype ${descr[1]} is not float32 ('<f4'); save it as float32`);
  if (fortran[1] === 'True') fail(`${file}: Fortran-ordered arrays are not supported; save it C-ordered`);
  const dims = shape[1].split(',').map((s) => s.trim()).filter(Boolean).map(Number);
  const count = dims.reduce((a, b) => a * b, 1);
  const offset = start + headerLen;
  if (buf.length - offset !== count * 4) fail(`${file}: ${buf.length - offset} data bytes for shape [${dims}]`);
  // Copy into a fresh, 4-byte-aligned buffer: Buffer's own memory may sit at any offset.
  const data = new Float32Array(count);
  new Uint8Array(data.buffer).set(buf.subarray(offset));
  return {shape: dims, data};
}

function writeNpy(file, shape, data) {
  const shapeText = shape.length === 1 ? `(${shape[0]},)` : `(${shape.join(', ')})`;
  let header = `{'descr': '<f4', 'fortran_order': False, 'shape': ${shapeText}, }`;
  // The header (with the 10-byte preamble and trailing newline) is padded to 64 bytes.
  header += ' '.repeat(63 - ((10 + header.length) % 64)) + '\n';
  const pre = Buffer.alloc(10);
  pre.writeUInt8(0x93, 0);
  pre.write('NUMPY', 1, 'latin1');
  pre.writeUInt8(1, 6);
  pre.writeUInt8(0, 7);
  pre.writeUInt16LE(header.length, 8);
  const body = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  fs.writeFileSync(file, Buffer.concat([pre, Buffer.from(header, 'latin1'), body]));
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

  const x = readNpy(args.input);
  const artifacts = readArtifacts(args.model);
  fs.mkdirSync(args.out, {recursive: true});

  const result = {tfjs: tf.version.tfjs, backends: {}};
  for (const name of args.backends) {
    try {
      result.backends[name] = await runBackend(tf, name, args, x, artifacts);
    } catch (e) {
      e.message = `${name} backend: ${e.message}`; // which backend broke is half the diagnosis
      throw e;
    }
  }
  process.stdout.write(JSON.stringify(result) + '\n');
}

async function runBackend(tf, name, args, x, artifacts) {
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

  const input = tf.tensor(x.data, x.shape, 'float32');
  const feed = {[args.inputName]: input};
  // execute() is the synchronous path a web app uses for static graphs; graphs with control
  // flow or dynamic shapes throw and need executeAsync(), which in turn warns on every call
  // for static graphs. So: try execute() once, fall back for good if the graph needs it.
  let useAsync = false;
  const run = async (inputs = feed) => {
    if (!useAsync) {
      try {
        return model.execute(inputs, args.outputName);
      } catch (e) {
        if (!/executeAsync/.test(e.message)) throw e;
        useAsync = true;
      }
    }
    return model.executeAsync(inputs, args.outputName);
  };
  t0 = performance.now();
  const output = await run();
  const values = await output.data(); // reading the data waits for the backend to finish
  const predictMs = performance.now() - t0;
  if (output.dtype !== 'float32') fail(`output '${args.outputName}' is ${output.dtype}, not float32`);

  const file = path.join(args.out, `${name}.npy`);
  writeNpy(file, output.shape, values);
  const entry = {output: file, load_ms: round(loadMs), predict_ms: round(predictMs)};
  if (name === 'wasm') {
    // Which binary ran: SIMD is on in Node 20; threads are never used under Node in 4.22.
    entry.simd = await tf.env().getAsync('WASM_HAS_SIMD_SUPPORT');
    entry.threads = await tf.env().getAsync('WASM_HAS_MULTITHREAD_SUPPORT');
  }
  output.dispose();

  if (args.bench) {
    const {warmup, minRuns, minMs, batch} = args.bench;
    const sampleSize = x.shape.slice(1).reduce((a, b) => a * b, 1);
    // Batch 1 is the first sample; a larger batch repeats the samples as needed.
    const batchOf = (n) => {
      const data = new Float32Array(n * sampleSize);
      for (let i = 0; i < n; i++) data.set(x.data.subarray((i % x.shape[0]) * sampleSize, ((i % x.shape[0]) + 1) * sampleSize), i * sampleSize);
      return tf.tensor(data, [n, ...x.shape.slice(1)], 'float32');
    };
    // Each timed call includes reading the result back, as an application must. Static
    // graphs on cpu and wasm run synchronously (execute + dataSync), which keeps the event
    // loop's scheduling out of the figures; graphs that need executeAsync are awaited.
    const timeAt = async (n) => {
      const inputs = {[args.inputName]: batchOf(n)};
      const syncCall = () => {
        const y = model.execute(inputs, args.outputName);
        y.dataSync();
        y.dispose();
      };
      const asyncCall = async () => {
        const y = await model.executeAsync(inputs, args.outputName);
        await y.data();
        y.dispose();
      };
      const call = useAsync ? asyncCall : syncCall;
      for (let i = 0; i < warmup; i++) await call();
      const times = [];
      const started = performance.now();
      while (times.length < minRuns || performance.now() - started < minMs) {
        const before = performance.now();
        await call();
        times.push(round(performance.now() - before));
      }
      inputs[args.inputName].dispose();
      return times;
    };
    entry.latency_ms = await timeAt(1);
    entry.batch_ms = await timeAt(batch);
  }
  input.dispose();
  model.dispose();
  return entry;
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
