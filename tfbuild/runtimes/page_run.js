#!/usr/bin/env node
// Opens a page in the system's Chromium (headless, through browser.js), waits until the page
// says it is finished, and prints what it found as one JSON line. tfbuild/runtimes/page.py
// runs it; the page is served from 127.0.0.1 by Python's StaticServer.
//
//   node page_run.js --url URL --results NAME --timeout-ms N
//                    [--collect SELECTOR] [--screenshot FILE --viewport WxH]
//
// The page publishes `window[NAME]`, a JSON-able object with `done: true` once it has
// finished (well or not). What comes back: that object (as it stood when the time ran out,
// if it did), the data-* attributes of every element matching SELECTOR, the page's console
// errors and uncaught exceptions, and every request that failed or left the page's origin.
// Requests to other origins are refused (aborted), not only recorded: a page that needs the
// network must fail here as it would offline.
//
// stdout: exactly one JSON line. Errors of this script itself: one line `page_run: <message>`
// on stderr, exit 1. The executable comes from TFBUILD_CHROMIUM.
'use strict';

const {launch} = require('./browser.js');

function parseArgs(argv) {
  const names = {
    '--url': 'url', '--results': 'results', '--timeout-ms': 'timeoutMs', '--collect': 'collect',
    '--screenshot': 'screenshot', '--viewport': 'viewport',
  };
  const args = {viewport: '1280x900'};
  for (let i = 0; i < argv.length; i += 2) {
    const key = names[argv[i]];
    if (key === undefined || i + 1 >= argv.length) throw new Error(`bad argument ${argv[i]}`);
    args[key] = argv[i + 1];
  }
  for (const required of ['url', 'results', 'timeoutMs']) {
    if (args[required] === undefined) throw new Error(`--${required} is required`);
  }
  // The name is put into page code: an identifier only.
  if (!/^[A-Za-z_$][\w$]*$/.test(args.results)) throw new Error(`--results wants a JS identifier, got '${args.results}'`);
  const size = /^(\d+)x(\d+)$/.exec(args.viewport);
  if (!size) throw new Error(`--viewport wants WxH, got '${args.viewport}'`);
  args.viewport = {width: Number(size[1]), height: Number(size[2])};
  args.timeoutMs = Number(args.timeoutMs);
  return args;
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  const origin = new URL(args.url).origin;
  const browser = await launch(process.env.TFBUILD_CHROMIUM);
  const found = {browser: await browser.version(), console_errors: [], failed_requests: [], offsite_requests: []};
  try {
    const page = await browser.newPage();
    await page.setViewport({...args.viewport, deviceScaleFactor: 1});
    page.on('console', (message) => {
      if (message.type() === 'error') found.console_errors.push(message.text());
    });
    page.on('pageerror', (error) => found.console_errors.push(`uncaught: ${error.message}`));
    await page.setRequestInterception(true);
    page.on('request', (request) => {
      const url = request.url();
      if (url.startsWith('data:') || url.startsWith('blob:') || new URL(url).origin === origin) {
        request.continue();
      } else {
        found.offsite_requests.push(url);
        request.abort();
      }
    });
    page.on('requestfailed', (request) => {
      if (!found.offsite_requests.includes(request.url())) {
        found.failed_requests.push(`${request.url()} (${(request.failure() || {}).errorText})`);
      }
    });
    page.on('response', (response) => {
      if (response.status() >= 400) found.failed_requests.push(`${response.url()} (HTTP ${response.status()})`);
    });

    const started = Date.now();
    await page.goto(args.url, {waitUntil: 'load', timeout: args.timeoutMs});
    const left = Math.max(1, args.timeoutMs - (Date.now() - started));
    found.timed_out = false;
    try {
      await page.waitForFunction(`Boolean(window.${args.results} && window.${args.results}.done)`, {timeout: left, polling: 100});
    } catch (error) {
      if (error.name !== 'TimeoutError') throw error;
      found.timed_out = true;
    }
    found.elapsed_ms = Date.now() - started;
    found.results = await page.evaluate(`JSON.parse(JSON.stringify(window.${args.results} ?? null))`);
    found.collected = args.collect === undefined ? [] : await page.$$eval(
      args.collect, (elements) => elements.map((e) => ({...e.dataset, text: e.textContent.trim()})));
    if (args.screenshot) await page.screenshot({path: args.screenshot, fullPage: true});
  } finally {
    await browser.close();
  }
  process.stdout.write(JSON.stringify(found) + '\n');
}

main().catch((error) => {
  const message = (error && error.message) || String(error);
  process.stderr.write(`page_run: ${message.split('\n')[0]}\n`);
  process.exitCode = 1;
});
