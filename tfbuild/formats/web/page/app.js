// Loads the bundled TF.js model, runs the bundled test samples on each backend, and shows
// the predictions and latencies. Everything is fetched from this folder by relative URL, so
// the folder works wherever it is served.
//
// For machines (tfbuild's check opens this page in Chromium) the same figures are in
// `window.tfbuildResults`: {done, status, message, error, tfjs, samples, backends: {name: {outputs:
// {output: {shape, values}}, latency_ms, load_ms} | {error}}}; `done` is set last, whether the
// run went well or not. Prediction cells carry data-backend/-sample/-output/-prediction.
'use strict';

const BACKENDS = ['webgl', 'wasm', 'cpu']; // in the order people are most likely to use them

const results = {done: false, status: 'loading', message: '', error: null, tfjs: null, samples: 0, backends: {}};
window.tfbuildResults = results;

const $ = (id) => document.getElementById(id);

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key.startsWith('data-') || key === 'colspan' || key === 'rowspan' || key === 'scope') {
      node.setAttribute(key, value);
    } else {
      node[key] = value;
    }
  }
  node.append(...children);
  return node;
}

function setStatus(state, text) {
  results.status = state;
  results.message = text;
  const status = $('status');
  status.dataset.status = state;
  status.textContent = text;
}

async function fetchOk(url) {
  const response = await fetch(url);
  if (!response.ok) throw new Error(`${url}: HTTP ${response.status}`);
  return response;
}

// --- samples ------------------------------------------------------------------------------

function sampleFeeds(meta, buffer) {
  // One typed array per input, all samples; sample s is rows [s * size, (s + 1) * size).
  return meta.inputs.map((input) => {
    const count = input.shape.reduce((a, b) => a * b, 1);
    const Typed = input.dtype === 'int32' ? Int32Array : Float32Array;
    return {...input, data: new Typed(buffer, input.offset, count), size: count / input.shape[0]};
  });
}

function feedOf(inputs, s) {
  return Object.fromEntries(inputs.map((input) => [
    input.name,
    tf.tensor(input.data.subarray(s * input.size, (s + 1) * input.size), [1, ...input.shape.slice(1)], input.dtype),
  ]));
}

function thumbnail(input, s) {
  // An (H, W, C) image, scaled to its own min..max so any preprocessing shows.
  const [height, width, channels] = input.shape.slice(1);
  const values = input.data.subarray(s * input.size, (s + 1) * input.size);
  let lo = Infinity;
  let hi = -Infinity;
  for (const v of values) { lo = Math.min(lo, v); hi = Math.max(hi, v); }
  const scale = hi > lo ? 255 / (hi - lo) : 0;
  const canvas = el('canvas', {width, height, className: 'thumb', title: `${input.name}, sample ${s}`});
  const context = canvas.getContext('2d');
  const image = context.createImageData(width, height);
  for (let p = 0; p < width * height; p++) {
    for (let c = 0; c < 3; c++) image.data[4 * p + c] = (values[p * channels + (channels === 3 ? c : 0)] - lo) * scale;
    image.data[4 * p + 3] = 255;
  }
  context.putImageData(image, 0, 0);
  return canvas;
}

function inputCell(inputs, s) {
  const image = inputs.find((input) => input.image);
  if (image) return el('td', {className: 'input'}, thumbnail(image, s));
  const first = inputs[0];
  const values = Array.from(first.data.subarray(s * first.size, s * first.size + 3), (v) => formatNumber(v));
  return el('td', {className: 'input mono'}, `[${values.join(', ')}${first.size > 3 ? ', …' : ''}]`);
}

// --- predictions --------------------------------------------------------------------------

function formatNumber(v) {
  return Math.abs(v) >= 1e4 || (Math.abs(v) < 1e-3 && v !== 0) ? v.toExponential(2) : String(Number(v.toPrecision(4)));
}

function className(output, index) {
  return output.classes && output.classes[index] !== undefined ? output.classes[index] : String(index);
}

// The rule tfbuild scores with (metrics.predicted_classes): argmax, or one score above 0.5.
function predictedClass(values) {
  if (values.length === 1) return values[0] > 0.5 ? 1 : 0;
  let best = 0;
  for (let i = 1; i < values.length; i++) if (values[i] > values[best]) best = i;
  return best;
}

function prediction(output, values) {
  if (output.task === 'classification') {
    const index = predictedClass(values);
    const score = values.length === 1 ? values[0] : values[index];
    return {key: String(index), text: className(output, index), detail: formatNumber(score), index};
  }
  const text = Array.from(values, formatNumber).join(', ');
  return {key: text, text, detail: ''};
}

function expectedText(output, s) {
  if (!output.expected) return '—';
  const value = output.expected[s];
  return output.task === 'classification' ? className(output, value) : [].concat(value).map(formatNumber).join(', ');
}

// --- running ------------------------------------------------------------------------------

function median(values) {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

async function runOn(backend, meta, inputs) {
  // setBackend resolves false (it does not throw) when a backend cannot start, e.g. no WebGL
  // or a missing .wasm binary.
  if (!(await tf.setBackend(backend))) {
    throw new Error(backend === 'wasm' ? 'failed to start: are its .wasm files beside the page?' : 'not available in this browser');
  }
  await tf.ready();
  let started = performance.now();
  const model = await tf.loadGraphModel(meta.model);
  const loadMs = performance.now() - started;
  const names = meta.outputs.map((output) => output.name);
  // execute() serves static graphs; graphs with control flow need executeAsync().
  let useAsync = false;
  const call = async (feed) => {
    if (!useAsync) {
      try {
        return [].concat(model.execute(feed, names));
      } catch (error) {
        if (!/executeAsync/.test(error.message)) throw error;
        useAsync = true;
      }
    }
    return [].concat(await model.executeAsync(feed, names));
  };
  const outputs = Object.fromEntries(names.map((name) => [name, {shape: null, values: []}]));
  const times = [];
  try {
    // One untimed call first (shader compilation, memory), then `runs` timed passes over the
    // samples; each call includes reading the result back, as an application must.
    for (let pass = -1; pass < meta.runs; pass++) {
      for (let s = 0; s < meta.samples; s++) {
        if (pass === -1 && s > 0) break;
        const feed = feedOf(inputs, s);
        started = performance.now();
        const ys = await call(feed);
        const values = await Promise.all(ys.map((y) => y.data()));
        const elapsed = performance.now() - started;
        if (pass >= 0) times.push(elapsed);
        if (pass === 0) {
          names.forEach((name, i) => {
            outputs[name].shape = [meta.samples, ...ys[i].shape.slice(1)];
            outputs[name].values.push(...values[i]);
          });
        }
        tf.dispose([...ys, ...Object.values(feed)]);
      }
    }
  } finally {
    model.dispose();
  }
  return {outputs, load_ms: round(loadMs), latency_ms: round(median(times)), times_ms: times.map(round)};
}

function round(ms) {
  return Math.round(ms * 1000) / 1000;
}

// --- tables -------------------------------------------------------------------------------

function samplesTable(meta, inputs) {
  const table = $('samples');
  const top = el('tr', {}, el('th', {rowspan: 2, scope: 'col'}, '#'), el('th', {rowspan: 2, scope: 'col'}, 'input'));
  const sub = el('tr');
  for (const output of meta.outputs) {
    top.append(el('th', {colspan: 1 + BACKENDS.length, scope: 'colgroup', className: 'group'}, output.name));
    sub.append(el('th', {scope: 'col'}, 'expected'), ...BACKENDS.map((b) => el('th', {scope: 'col'}, b)));
  }
  table.append(el('thead', {}, top, sub));
  const body = el('tbody');
  for (let s = 0; s < meta.samples; s++) {
    const row = el('tr', {}, el('th', {scope: 'row'}, String(s)), inputCell(inputs, s));
    meta.outputs.forEach((output, o) => {
      row.append(el('td', {className: 'expected group', 'data-sample': s, 'data-output': output.name}, expectedText(output, s)));
      for (const backend of BACKENDS) {
        row.append(el('td', {id: `cell-${backend}-${s}-${o}`, className: 'pending'}, '…'));
      }
    });
    body.append(row);
  }
  table.append(body);
}

function fillSamples(meta, backend, run) {
  let right = 0;
  let judged = 0;
  meta.outputs.forEach((output, o) => {
    const {shape, values} = run.outputs[output.name];
    const size = shape.slice(1).reduce((a, b) => a * b, 1);
    for (let s = 0; s < meta.samples; s++) {
      const shown = prediction(output, values.slice(s * size, (s + 1) * size));
      const cell = $(`cell-${backend}-${s}-${o}`);
      cell.className = 'prediction';
      Object.assign(cell.dataset, {backend, sample: s, output: output.name, prediction: shown.key});
      cell.replaceChildren(el('span', {className: 'value'}, shown.text));
      if (shown.detail) cell.append(el('span', {className: 'detail'}, ` ${shown.detail}`));
      if (output.task === 'classification' && output.expected) {
        const ok = shown.index === output.expected[s];
        right += ok;
        judged += 1;
        cell.classList.add(ok ? 'right' : 'wrong');
        cell.title = ok ? 'matches the label' : 'differs from the label';
      }
    }
  });
  return judged ? `${right}/${judged}` : '—';
}

function failSamples(meta, backend) {
  meta.outputs.forEach((_, o) => {
    for (let s = 0; s < meta.samples; s++) {
      const cell = $(`cell-${backend}-${s}-${o}`);
      cell.className = 'unavailable';
      cell.textContent = 'n/a';
    }
  });
}

function backendsTable() {
  const head = ['backend', 'status', 'load (ms)', 'latency p50 (ms)', 'correct'];
  const table = $('backends');
  table.append(el('thead', {}, el('tr', {}, ...head.map((h, i) => el('th', {scope: 'col', className: i > 1 ? 'num' : ''}, h)))));
  const body = el('tbody');
  for (const backend of BACKENDS) {
    body.append(el('tr', {id: `backend-${backend}`, 'data-backend': backend},
      el('th', {scope: 'row'}, backend), el('td', {className: 'pending'}, 'waiting'),
      el('td', {className: 'num'}, ''), el('td', {className: 'num'}, ''), el('td', {className: 'num'}, '')));
  }
  table.append(body);
}

function fillBackend(backend, state, cells) {
  const row = $(`backend-${backend}`);
  row.dataset.state = state;
  row.cells[1].className = state;
  cells.forEach((text, i) => { row.cells[i + 1].textContent = text; });
}

// --- main ---------------------------------------------------------------------------------

async function main() {
  results.tfjs = tf.version.tfjs;
  const meta = await (await fetchOk('samples.json')).json();
  const buffer = await (await fetchOk('samples.bin')).arrayBuffer();
  const inputs = sampleFeeds(meta, buffer);
  results.samples = meta.samples;
  document.title = `${meta.title}: TF.js model check`;
  $('title').textContent = meta.title;
  $('about').textContent = `TF.js graph model · weights ${meta.variant} · TF.js ${tf.version.tfjs} · ` +
    `${meta.samples} test samples · latency: one sample a call, median of ${meta.runs} passes`;
  backendsTable();
  samplesTable(meta, inputs);
  // The .wasm binaries sit beside this page. Without tf-backend-wasm.min.js, tf.wasm is
  // missing and the wasm backend fails on its own row.
  if (tf.wasm) tf.wasm.setWasmPaths('./');
  for (const backend of BACKENDS) {
    setStatus('running', `Running on ${backend}…`);
    fillBackend(backend, 'running', ['running']);
    try {
      const run = await runOn(backend, meta, inputs);
      results.backends[backend] = run;
      const right = fillSamples(meta, backend, run);
      fillBackend(backend, 'ok', ['ran', run.load_ms.toFixed(1), run.latency_ms.toFixed(2), right]);
    } catch (error) {
      results.backends[backend] = {error: error.message};
      failSamples(meta, backend);
      fillBackend(backend, 'failed', [`failed: ${error.message}`, '', '', '']);
    }
  }
  const ran = BACKENDS.filter((b) => !results.backends[b].error);
  setStatus(ran.length ? 'done' : 'error',
    ran.length ? `Done: ${meta.samples} samples on ${ran.join(', ')}.` : 'Error: no backend could run the model.');
  if (!ran.length) results.error = 'no backend could run the model';
}

main().catch((error) => {
  results.error = error.message;
  setStatus('error', `Error: ${error.message}`);
}).finally(() => {
  results.done = true;
});
