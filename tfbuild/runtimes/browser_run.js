#!/usr/bin/env node
// Runs TF.js graph models in headless Chromium, the way a web app meets them: the page
// (browser_page.html + browser_page.js, served over HTTP on 127.0.0.1 by the Python side,
// tfjs_browser.py) loads TF.js and each model from the server and runs each batch on each
// backend. This script is the puppeteer side: one Chromium and one page for as many models
// as it is asked to run, one request at a time.
//
//   TFBUILD_CHROMIUM=/usr/bin/chromium node browser_run.js --profile DIR
//
// stdin, one JSON line per request:
//   {"url": ".../browser_page.html", "config": "runs/N/config.json", "prefix": "runs/N/",
//    "label": MODEL_DIR, "out": OUTDIR, "backends": ["webgl", "wasm"],
//    "bench": null | the timing protocol (timing.py Protocol.for_js, run by timing.js)}
// stdout, one JSON line per request: {"ok": true, "result": {...}} or {"ok": false, "error":
// "one line"}; the outputs are OUTDIR/<backend>/<i>.npy, float32, i the output's position
// in the result's "outputs". --profile is Chromium's user-data-dir, a folder the caller owns,
// so it can find and end a Chromium this script could not. Chromium starts at once (while
// the caller writes the inputs) and ends when stdin does, or with this process.
//
// Errors that end the script (Chromium will not start): one line `browser_run: <message>` on
// stderr, exit 1. TFBUILD_DEBUG=1 adds stacks and the page's console. Progress goes to stderr
// as `stage: ...` lines, so that a caller that had to stop a hung run can say where it hung.
'use strict';

const fs = require('fs');
const path = require('path');
const readline = require('readline');
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
  if (argv.length !== 2 || argv[0] !== '--profile') fail('usage: browser_run.js --profile DIR (requests on stdin)');
  return {profile: argv[1]};
}

function checkRequest(request) {
  for (const key of ['url', 'config', 'prefix', 'label', 'out', 'backends']) {
    if (request[key] === undefined) fail(`request without '${key}'`);
  }
  if (!request.backends.length) fail('no backends requested');
  for (const b of request.backends) {
    if (!BACKENDS.includes(b)) fail(`unknown backend '${b}' (this runner has ${BACKENDS.join(', ')})`);
  }
}

// The page's messages name server URLs; the user knows the model folder.
function localize(message, request) {
  const base = request.url.slice(0, request.url.lastIndexOf('/') + 1);
  return message.split(`${base}${request.prefix}model/`).join(`${request.label}/`).split(base).join('');
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  const {launch} = require('./browser.js');
  stage('starting Chromium');
  const browser = await launch(process.env.TFBUILD_CHROMIUM, [`--user-data-dir=${args.profile}`]);
  try {
    const version = await browser.version();
    // The tab Chromium opens at start: a new one would cost another renderer start.
    const page = (await browser.pages())[0] || (await browser.newPage());
    const evaluate = pageEvaluator(page);
    let loaded = null; // the page's URL once loaded; null again after an error
    for await (const line of readline.createInterface({input: process.stdin})) {
      if (!line.trim()) continue;
      let reply;
      try {
        const request = JSON.parse(line);
        checkRequest(request);
        try {
          if (loaded !== request.url) {
            stage('loading the page and TF.js');
            const response = await page.goto(request.url, {waitUntil: 'load', timeout: 0});
            if (!response || !response.ok()) fail(`the runner page ${request.url} did not load`);
            loaded = request.url;
          }
          reply = {ok: true, result: {browser: version, ...(await runModel(evaluate, request))}};
        } catch (e) {
          // A fresh page for the next model: nothing of a failed run may linger.
          loaded = null;
          if (DEBUG && e.stack && !e.expected) process.stderr.write(e.stack + '\n');
          reply = {ok: false, error: `${e.where || ''}TF.js model ${request.label}: ${localize(oneLine(e), request)}`};
        }
      } catch (e) {
        reply = {ok: false, error: `bad request: ${oneLine(e)}`};
      }
      process.stdout.write(JSON.stringify(reply) + '\n');
    }
  } finally {
    end(browser);
  }
}

function oneLine(error) {
  return String((error && error.message) || error).split('\n')[0];
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
      fail(oneLine(e).replace(/^Error: /, ''));
    }
  };
}

async function runModel(evaluate, request) {
  stage('checking the model files');
  const init = await evaluate((c, b, d) => window.tfbuild.init(c, b, d), request.config, request.backends, DEBUG);
  const result = {tfjs: init.tfjs, samples: init.samples, backends: {}};
  for (const backend of request.backends) {
    try {
      result.backends[backend] = await runBackend(evaluate, backend, request, init, result);
    } catch (e) {
      e.where = `${backend} backend on `; // which backend broke is half the diagnosis
      throw e;
    }
  }
  return result;
}

async function runBackend(evaluate, backend, request, init, result) {
  stage(`${backend}: starting the backend and loading the model`);
  const setup = await evaluate((b) => window.tfbuild.setup(b), backend);
  result.outputs = setup.outputs;
  const folder = path.join(request.out, backend);
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
  if (request.bench) {
    stage(`${backend}: timing calls`);
    Object.assign(entry, await evaluate((b) => window.tfbuild.bench(b), request.bench));
  }
  await evaluate(() => window.tfbuild.finish());
  return entry;
}

// Ends Chromium and its helpers at once: puppeteer started it as the leader of its own
// process group, and every output is on disk by now, so there is nothing to close politely
// (browser.close() took ~0.2-0.4 s more here). browser.close() stays the fallback.
function end(browser) {
  try {
    process.kill(-browser.process().pid, 'SIGKILL');
  } catch (e) {
    browser.close().catch(() => {});
  }
}

function round(ms) {
  return Math.round(ms * 1000) / 1000;
}

function report(error) {
  const message = oneLine(error);
  if (DEBUG && error && error.stack && !error.expected) process.stderr.write(error.stack + '\n');
  if (error && error.code === 'MODULE_NOT_FOUND') {
    const root = path.resolve(__dirname, '..', '..');
    process.stderr.write(`browser_run: puppeteer-core is not installed in ${path.join(root, 'node_modules')} (run \`make setup\`, i.e. npm ci): ${message}\n`);
  } else {
    process.stderr.write(`browser_run: ${message}\n`);
  }
  process.exitCode = 1;
}

main().catch(report);
