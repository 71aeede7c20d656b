// Starts the system's Chromium through puppeteer-core (never a downloaded browser), headless,
// with WebGL on SwiftShader. Shared by every script that runs a page (browser_run.js, the
// web bundle's check). Node scripts only: `const {launch} = require('./browser.js')`.
'use strict';

const puppeteer = require('puppeteer-core');

// Headless with no GPU: WebGL runs on SwiftShader (software), which Chromium enables only
// when asked; containers often have a tiny /dev/shm. The executable comes from Python
// (runtimes/chromium.py found it while planning).
const FLAGS = [
  '--no-sandbox',
  '--enable-unsafe-swiftshader',
  '--use-angle=swiftshader',
  '--disable-dev-shm-usage',
  '--no-first-run',
  '--no-default-browser-check',
  '--disable-extensions',
  '--mute-audio',
];

async function launch(executablePath, extraArgs = []) {
  if (!executablePath) throw new Error('no Chromium executable given (TFBUILD_CHROMIUM)');
  return puppeteer.launch({
    executablePath,
    headless: true,
    args: [...FLAGS, ...extraArgs],
    // The DevTools protocol over a pipe, not a port: Chromium then exits by itself when the
    // Node process that drives it ends, even one killed outright at a time limit (with a
    // port, such a Chromium kept running).
    pipe: true,
    // The page's own time limits apply; puppeteer's default 30 s protocol timeout is too
    // short for a large model on the cpu backend.
    protocolTimeout: 0,
  });
}

module.exports = {launch, FLAGS};
