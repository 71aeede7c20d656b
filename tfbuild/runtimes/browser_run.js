#!/usr/bin/env node
// Runs a TF.js graph model in headless Chromium, the way a web app meets it: the page
// (browser_page.html + browser_page.js, served over HTTP on 127.0.0.1 by the Python side)
// loads TF.js and the model from the server and runs each batch on each backend. This
// script is the puppeteer side: one Chromium and one page for the whole run, the backends
// one after another (see browser_page.js), outputs written as .npy.
//
//   TFBUILD_CHROMIUM=/usr/bin/chromium node browser_run.js --url http://127.0.0.1:PORT/browser_page.html
//       --out OUTDIR --label MODEL_DIR --profile DIR [--backends webgl,wasm,cpu,webgpu]
//       [--bench WARMUP,MIN_RUNS,MIN_MS,BATCH]
//
// Outputs: OUTDIR/<backend>/<i>.npy, float32, i the output's position in the report's
// "outputs" list. --label is the model folder, named in messages instead of server URLs.
// --profile is Chromium's user-data-dir: a folder the caller owns, so it can find and end
// a Chromium this script could not (it was killed at the time limit).
//
// stdout: exactly one JSON line. Errors: one line `browser_run: <message>` on stderr, exit 1
// (TFBUILD_DEBUG=1 adds the stack and the page's console). Progress goes to stderr as
// `stage: ...` lines, so that a caller that had to stop a hung run can say where it hung.
'use strict';

const fs = require('fs');
const path = require('path');
const {NpyWriter} = require('./npy.js');

const DEBUG = Boolean(process.env.TFBUILD_DEBUG);
const BACKENDS = ['webgl', 'wasm', 'cpu', 'webgpu'];

function fail(message) {
  const error = new Error(message);
  error.expected = true;
  throw error;
}

function stage(text) {
  process.stderr.write(`stage: ${text}\n`);
}

function parseArgs(argv) {
  const args = {backends: 'webgl'};
  const names = {
    '--url': 'url', '--out': 'out', '--label': 'label', '--profile': 'profile',
    '--backends': 'backends', '--bench': 'bench',
  };
  for (let i = 0; i < argv.length; i += 2) {
    const key = names[argv[i]];
    if (key === undefined) fail(`unknown argument ${argv[i]}`);
    if (i + 1 >= argv.length) fail(`${argv[i]} needs a value`);
    args[key] = argv[i + 1];
  }
  for (const required of ['url', 'out', 'label', 'profile']) {
    if (args[required] === undefined) fail(`--${required} is required`);
  }
  args.backends = args.backends.split(',').map((b) => b.trim()).filter(Boolean);
  if (args.backends.length === 0) fail('--backends is empty');
  for (const b of args.backends) {
    if (!BACKENDS.includes(b)) fail(`unknown backend '${b}' (this runner has ${BACKENDS.join(', ')})`);
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

// The page's messages name server URLs; the user knows the folder. `base` ends with '/'.
function localize(message, base, label) {
  return message.split(`${base}model/`).join(`${label}/`).split(base).join('');
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  const base = args.url.slice(0, args.url.lastIndexOf('/') + 1);
  const {launch} = require('./browser.js');
  stage('starting Chromium');
  const browser = await launch(process.env.TFBUILD_CHROMIUM, [`--user-data-dir=${args.profile}`]);
  let backend = null;
  try {
    const result = {browser: await browser.version(), backends: {}};
    // The tab Chromium opens at start: a new one would cost another renderer start.
    const page = (await browser.pages())[0] || (await browser.newPage());
    const evaluate = pageEvaluator(page);
    stage('loading the page and TF.js, checking the weight shards');
    const response = await page.goto(args.url, {waitUntil: 'load', timeout: 0});
    if (!response || !response.ok()) fail(`the runner page ${args.url} did not load`);
    const init = await evaluate((b, d) => window.tfbuild.init(b, d), args.backends, DEBUG);
    Object.assign(result, {tfjs: init.tfjs, samples: init.samples});
    for (backend of args.backends) {
      result.backends[backend] = await runBackend(evaluate, backend, args, init, result);
    }
    process.stdout.write(JSON.stringify(result) + '\n');
  } catch (e) {
    // Which backend broke, on which artifact, is half the diagnosis.
    const where = backend ? `${backend} backend on ` : '';
    e.message = `${where}TF.js model ${args.label}: ${localize(e.message, base, args.label)}`;
    throw e;
  } finally {
    await end(browser);
  }
}

// page.evaluate, with the page's error as one line (and a crash said as such).
function pageEvaluator(page) {
  let crashed = null;
  page.on('error', (e) => { crashed = e; }); // the renderer died (out of memory, a GPU process crash)
  if (DEBUG) {
    page.on('console', (m) => process.stderr.write(`page console: ${m.text()}\n`));
    page.on('pageerror', (e) => process.stderr.write(`page error: ${e.message}\n`));
  }
  return async (fn, ...values) => {
    try {
      return await page.evaluate(fn, ...values);
    } catch (e) {
      if (crashed) fail(`the page crashed (${crashed.message}); out of memory?`);
      // Page-side errors come back as "Error: message\n    at ..." or a bare thrown value.
      fail(String((e && e.message) || e).replace(/^Error: /, '').split('\n')[0]);
    }
  };
}

async function runBackend(evaluate, backend, args, init, result) {
  stage(`${backend}: starting the backend and loading the model`);
  const setup = await evaluate((b) => window.tfbuild.setup(b), backend);
  result.outputs = setup.outputs;
  const folder = path.join(args.out, backend);
  fs.mkdirSync(folder, {recursive: true});
  const files = Object.fromEntries(setup.outputs.map((o, i) => [o, path.join(folder, `${i}.npy`)]));
  const writers = setup.outputs.map((o) => new NpyWriter(files[o], init.samples));
  let predictMs = 0;
  try {
    // One evaluate per batch: each message to and from the page stays one batch large.
    for (let k = 0; k < init.batches; k++) {
      stage(`${backend}: batch ${k + 1} of ${init.batches}`);
      const done = await evaluate((i) => window.tfbuild.runBatch(i), k);
      predictMs += done.predict_ms;
      done.outputs.forEach((y, i) => writers[i].append(y.shape, Buffer.from(y.data, 'base64')));
    }
  } finally {
    writers.forEach((w) => w.close());
  }
  const entry = {outputs: files, load_ms: round(setup.load_ms), predict_ms: round(predictMs), ...setup.info};
  if (args.bench) {
    stage(`${backend}: timing calls`);
    Object.assign(entry, await evaluate((b) => window.tfbuild.bench(b), args.bench));
  }
  await evaluate(() => window.tfbuild.finish());
  return entry;
}

// Ends Chromium and its helpers at once: puppeteer started it as the leader of its own
// process group, and the outputs are on disk by now, so there is nothing to close politely
// (browser.close() took ~0.2-0.4 s more here). browser.close() stays the fallback.
async function end(browser) {
  const child = browser.process();
  try {
    process.kill(-child.pid, 'SIGKILL');
  } catch (e) {
    await browser.close().catch(() => {});
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
    process.stderr.write(`browser_run: puppeteer-core is not installed in ${path.join(root, 'node_modules')} (run \`make setup\`, i.e. npm ci): ${message.split('\n')[0]}\n`);
  } else {
    process.stderr.write(`browser_run: ${message.split('\n')[0]}\n`);
  }
  process.exitCode = 1;
}

main().catch(report);
