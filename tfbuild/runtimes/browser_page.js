// Runs in the page browser_run.js opens (browser_page.html): loads TF.js from the local
// server once, then for each model it is given and each backend in turn starts the backend,
// loads the model over HTTP with tf.loadGraphModel (as a web app does), and runs it a batch
// at a time on request:
//
//   await tfbuild.init(configUrl, backends, debug) -> {tfjs, samples, batches}
//   await tfbuild.setup(backend)                   -> {outputs, load_ms, info}
//   await tfbuild.runBatch(k)   -> {predict_ms, outputs: [{shape, data: base64 float32}]}
//   await tfbuild.bench(protocol)  -> {latency_ms, batch_ms}: ms per call, per round (timing.js)
//   tfbuild.finish()                               -> the model and its tensors are disposed
//
// One page for every backend and model: loading TF.js again in a fresh page cost ~0.5 s
// here. A config.json (written by tfbuild/runtimes/tfjs_browser.py) lists the model, the
// inputs' names, and one .npy per input per batch: the server sends whole files only, so
// each batch is its own file and the page never holds more than one batch of samples.
'use strict';

(() => {
  const state = {config: null, model: null, outputs: null, useAsync: false};
  // Scripts under lib/ (tfjs_browser.py links them from node_modules): the union bundle has
  // core, converter, cpu and webgl; its ES2017 build loaded in half the time of the ES5 one.
  const TFJS = 'lib/tf.es2017.min.js';
  const BACKEND_SCRIPTS = {wasm: 'lib/tf-backend-wasm.es2017.min.js', webgpu: 'lib/tf-backend-webgpu.es2017.min.js'};

  function fail(message) {
    throw new Error(message);
  }

  function loadScript(src) {
    return new Promise((resolve, reject) => {
      const script = document.createElement('script');
      script.src = src;
      script.onload = resolve;
      script.onerror = () => reject(new Error(`could not load ${src} from the local server`));
      document.head.appendChild(script);
    });
  }

  async function fetchOk(url) {
    const response = await fetch(url);
    if (!response.ok) fail(`${url}: HTTP ${response.status}`);
    return response;
  }

  // The .npy subset the Python side writes: little-endian float32 or int32, C order.
  const NPY_TYPES = {'<f4': ['float32', Float32Array], '<i4': ['int32', Int32Array]};

  async function readNpy(url) {
    const buffer = await (await fetchOk(url)).arrayBuffer();
    const bytes = new Uint8Array(buffer);
    const view = new DataView(buffer);
    const magic = String.fromCharCode(...bytes.subarray(1, 6));
    if (bytes[0] !== 0x93 || magic !== 'NUMPY') fail(`${url} is not a .npy file`);
    const major = bytes[6];
    const headerLen = major === 1 ? view.getUint16(8, true) : view.getUint32(8, true);
    const start = major === 1 ? 10 : 12;
    const header = new TextDecoder('latin1').decode(bytes.subarray(start, start + headerLen));
    const descr = /'descr':\s*'([^']*)'/.exec(header);
    const shape = /'shape':\s*\(([^)]*)\)/.exec(header);
    if (!descr || !shape || !NPY_TYPES[descr[1]] || /'fortran_order':\s*True/.test(header)) {
      fail(`${url}: unsupported .npy header ${header.trim()}`);
    }
    const [dtype, Type] = NPY_TYPES[descr[1]];
    const dims = shape[1].split(',').map((s) => s.trim()).filter(Boolean).map(Number);
    // slice(): a typed array needs an offset that is a multiple of its element size.
    const data = new Type(buffer.slice(start + headerLen));
    if (data.length !== dims.reduce((a, b) => a * b, 1)) fail(`${url}: ${data.length} values for shape [${dims}]`);
    return {data, shape: dims, dtype};
  }

  async function readFeed(files) {
    const arrays = await Promise.all(files.map(readNpy));
    return Object.fromEntries(state.config.inputs.map((input, i) => [
      input.name, tf.tensor(arrays[i].data, arrays[i].shape, arrays[i].dtype),
    ]));
  }

  // A Blob read as a data: URL is the browser's native base64 encoder: fast for any size,
  // and a string is what page.evaluate carries back to Node most cheaply.
  function base64(typed) {
    return new Promise((resolve, reject) => {
      const reader = new FileReader();
      reader.onload = () => resolve(reader.result.slice(reader.result.indexOf(',') + 1));
      reader.onerror = () => reject(reader.error);
      reader.readAsDataURL(new Blob([new Uint8Array(typed.buffer, typed.byteOffset, typed.byteLength)]));
    });
  }

  // TF.js reads whatever a weight URL answers (a 404 page, half a shard) as weights and
  // fails later with "byte length of Float32Array should be a multiple of 4", or not at all.
  // So each shard listed in model.json must be there, and together hold the bytes the
  // manifest's weights need (quantized weights count at their stored width).
  const BYTES = {float32: 4, int32: 4, bool: 1, uint8: 1, int8: 1, uint16: 2, int16: 2, float16: 2};

  async function checkWeights(modelUrl) {
    const json = await (await fetchOk(modelUrl)).json();
    let need = 0;
    let sized = true; // string weights have no fixed width: then only presence is checked
    const urls = [];
    for (const group of json.weightsManifest || []) {
      for (const w of group.weights) {
        const size = BYTES[w.quantization ? w.quantization.dtype : w.dtype];
        if (size === undefined) sized = false;
        else need += size * w.shape.reduce((a, b) => a * b, 1);
      }
      urls.push(...group.paths.map((p) => new URL(p, new URL(modelUrl, location.href)).href));
    }
    const sizes = await Promise.all(urls.map(async (url) => {
      const response = await fetch(url, {method: 'HEAD'});
      if (!response.ok) fail(`weight shard ${url} listed in model.json is missing (HTTP ${response.status})`);
      return Number(response.headers.get('content-length'));
    }));
    const have = sizes.reduce((a, b) => a + b, 0);
    if (sized && have !== need) {
      fail(`its weight shards hold ${have} bytes but model.json's weightsManifest needs ${need}: ` +
           'a shard is truncated, padded or from another model');
    }
  }

  async function checkWebGpu(info) {
    if (!navigator.gpu) {
      fail('the webgpu backend cannot run: this browser offers no WebGPU (navigator.gpu is missing); webgpu needs a GPU-enabled browser');
    }
    const adapter = await navigator.gpu.requestAdapter();
    if (!adapter) {
      fail('the webgpu backend cannot run: this browser offers no WebGPU adapter (navigator.gpu.requestAdapter() gave none); webgpu needs a GPU-enabled browser');
    }
    if (adapter.info) info.adapter = `${adapter.info.vendor} ${adapter.info.architecture} ${adapter.info.description}`.trim();
    if (!state.config.libs.webgpu) {
      fail('the webgpu backend cannot run: @tensorflow/tfjs-backend-webgpu is not installed in node_modules (add it to package.json, then `make setup`)');
    }
  }

  // TF.js falls back to another backend when one fails to start (with a console warning
  // only); a run on the wrong backend would verify the wrong thing, so both are checked.
  async function startBackend(backend, info) {
    if (backend === 'webgpu') await checkWebGpu(info); // again, for the adapter's name
    const script = BACKEND_SCRIPTS[backend];
    if (script && !loadedScripts.has(script)) {
      await loadOnce(script);
      // Once only: the wasm backend refuses new paths after it has started.
      if (backend === 'wasm') tf.wasm.setWasmPaths(new URL('lib/', location.href).href);
    }
    const ok = await tf.setBackend(backend);
    await tf.ready();
    if (!ok || tf.getBackend() !== backend) {
      fail(`failed to initialize (TF.js's backend is '${tf.getBackend()}')`);
    }
    if (backend === 'webgl') {
      // A lost or missing context would make every kernel fail or return zeros.
      const gl = tf.backend().gpgpu && tf.backend().gpgpu.gl;
      const real = gl && (gl instanceof WebGL2RenderingContext || gl instanceof WebGLRenderingContext);
      if (!real || gl.isContextLost()) fail('no usable WebGL context');
      const debug = gl.getExtension('WEBGL_debug_renderer_info');
      info.renderer = String(gl.getParameter(debug ? debug.UNMASKED_RENDERER_WEBGL : gl.RENDERER));
      info.webgl_version = tf.env().getNumber('WEBGL_VERSION');
      // Without float32 render targets TF.js computes in float16: worth knowing when
      // outputs drift.
      info.float32 = tf.env().getBool('WEBGL_RENDER_FLOAT32_ENABLED');
    } else if (backend === 'wasm') {
      // Threads need a cross-origin isolated page (COOP/COEP headers), which a plain static
      // server is not: the SIMD binary runs, single-threaded, as in Node.
      info.simd = await tf.env().getAsync('WASM_HAS_SIMD_SUPPORT');
      info.threads = await tf.env().getAsync('WASM_HAS_MULTITHREAD_SUPPORT');
    }
  }

  const loadedScripts = new Set();

  async function loadOnce(src) {
    if (!loadedScripts.has(src)) await loadScript(src);
    loadedScripts.add(src);
  }

  async function init(configUrl, backends, debug) {
    state.config = await (await fetchOk(configUrl)).json();
    // Say so before loading anything: no WebGPU means no run, however the others went.
    if (backends.includes('webgpu')) await checkWebGpu({});
    await loadOnce(TFJS);
    if (!debug) tf.enableProdMode(); // silences TF.js's console hints only
    await checkWeights(state.config.model);
    return {tfjs: tf.version.tfjs, samples: state.config.samples, batches: state.config.batches.length};
  }

  async function setup(backend) {
    state.useAsync = false;
    const info = {};
    await startBackend(backend, info);
    const t0 = performance.now();
    const model = await tf.loadGraphModel(state.config.model);
    const loadMs = performance.now() - t0;
    state.model = model;
    // With a signature these are its names; without one, graph node names.
    const given = state.config.inputs.map((input) => input.name);
    const missing = model.inputNodes.filter((n) => !given.includes(n));
    const unknown = given.filter((n) => !model.inputNodes.includes(n));
    if (missing.length || unknown.length) fail(`the model's inputs are [${model.inputNodes}], given [${given}]`);
    state.outputs = state.config.outputs.length ? state.config.outputs : model.outputNodes;
    return {outputs: state.outputs, load_ms: loadMs, info};
  }

  function finish() {
    if (state.model) state.model.dispose();
    state.model = null;
  }

  // execute() is the synchronous path a web app uses for static graphs; graphs with control
  // flow or dynamic shapes throw and need executeAsync() (tfjs_run.js does the same).
  async function run(feed) {
    if (!state.useAsync) {
      try {
        return state.model.execute(feed, state.outputs);
      } catch (e) {
        if (!/executeAsync/.test(e.message)) throw e;
        state.useAsync = true;
      }
    }
    return state.model.executeAsync(feed, state.outputs);
  }

  async function runBatch(k) {
    const feed = await readFeed(state.config.batches[k].files);
    try {
      const t0 = performance.now();
      const ys = [].concat(await run(feed)); // one output comes back as a bare tensor
      // Reading the data waits for the backend (the GPU on webgl) to finish.
      const values = await Promise.all(ys.map((y) => y.data()));
      const predictMs = performance.now() - t0;
      const shapes = ys.map((y) => y.shape);
      tf.dispose(ys);
      // int32 or bool outputs become float32, as in Node.
      const data = await Promise.all(values.map((v) => base64(v instanceof Float32Array ? v : Float32Array.from(v))));
      return {predict_ms: predictMs, outputs: shapes.map((shape, i) => ({shape, data: data[i]}))};
    } finally {
      tf.dispose(Object.values(feed));
    }
  }

  // tfjs_run.js's inputs and protocol (timing.js, loaded by browser_page.html): batch 1 is
  // the first sample, a larger batch the first `batch` samples (config.bench holds them).
  // Each timed call awaits the outputs' data, so GPU work and the download are in the
  // figure, as an application pays them.
  async function bench(protocol) {
    const first = await readFeed(state.config.bench.files);
    const have = state.config.bench.rows;
    const batchOf = (n) => Object.fromEntries(Object.entries(first).map(([name, t]) => {
      const index = tf.tensor1d(Array.from({length: n}, (_, i) => i % have), 'int32');
      const rows = tf.gather(t, index);
      index.dispose();
      return [name, rows];
    }));
    const callOn = (feed) => async () => {
      const ys = [].concat(state.useAsync ? await state.model.executeAsync(feed, state.outputs)
                                          : state.model.execute(feed, state.outputs));
      await Promise.all(ys.map((y) => y.data()));
      tf.dispose(ys);
    };
    const one = batchOf(1);
    const many = batchOf(protocol.batch);
    try {
      return await window.tfbuildTiming.timeRounds(callOn(one), callOn(many), protocol);
    } finally {
      tf.dispose([...Object.values(one), ...Object.values(many), ...Object.values(first)]);
    }
  }

  window.tfbuild = {init, setup, runBatch, bench, finish};
})();
