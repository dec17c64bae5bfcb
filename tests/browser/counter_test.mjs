// Browser test of the page that `stateroom new` generates (src/cli/templates/index.html).
//
// Usage: node counter_test.mjs STATEROOM_BIN SCREENSHOT_PATH
//
// Runs `STATEROOM_BIN new counter` in a temporary directory and `STATEROOM_BIN dev 0` in the new
// project, opens its page in two headless Chromium pages (Debian's /usr/bin/chromium, driven by
// playwright-core), clicks increment/decrement and checks that both pages follow, saves a
// screenshot of the two pages side by side to SCREENSHOT_PATH, then stops the server with SIGTERM
// and checks it exits with 0 within 15 s and that the pages show the disconnection.
//
// For development without `new`/`dev`: STATEROOM_BROWSER_TEST_SERVE=PATH/TO/counter.wasm runs
// `STATEROOM_BIN serve counter.wasm --port 0 --host 127.0.0.1 --static DIR` instead, DIR holding
// the template with {{name}} replaced by "counter".
//
// Exits non-zero with a message naming the failed check on any failure; always cleans up.
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

process.env.PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD = '1';
const { chromium } = await import('playwright-core');

const CHROMIUM = '/usr/bin/chromium';
const LAUNCH_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
  '--disable-component-update', '--disable-sync', '--no-first-run'];
const WAIT_MS = 10_000;       // each wait for the page to show something
const BUILD_MS = 120_000;     // `stateroom dev`: first build, until "listening on"
const SERVE_MS = 15_000;      // `stateroom serve`: until "listening on"
const EXIT_MS = 15_000;       // SIGTERM until exit
const TOTAL_MS = 300_000;     // the whole test
const NAME = 'counter';

const here = path.dirname(fileURLToPath(import.meta.url));
const [bin, screenshotPath] = process.argv.slice(2);
if (!bin || !screenshotPath || process.argv.length !== 4) {
  console.error('usage: node counter_test.mjs STATEROOM_BIN SCREENSHOT_PATH');
  process.exit(2);
}
const serveWasm = process.env.STATEROOM_BROWSER_TEST_SERVE;

const log = (msg) => console.log(`browser-test: ${msg}`);
const ok = (msg) => console.log(`  ok  ${msg}`);
let checks = 0;
const check = (msg) => { checks++; ok(msg); };

let tmp = null, server = null, serverLog = '', browser = null;

function killServerGroup() {
  if (server && server.pid) {
    try { process.kill(-server.pid, 'SIGKILL'); } catch { /* already gone */ }
  }
}
process.on('exit', killServerGroup); // last resort, synchronous
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.on(sig, async () => { console.error(`browser-test: FAIL: interrupted by ${sig}`); await cleanup(); process.exit(1); });
}

async function cleanup() {
  if (browser) { await browser.close().catch(() => {}); browser = null; }
  if (server && server.exitCode === null && server.signalCode === null) {
    const gone = new Promise((r) => server.once('exit', r));
    killServerGroup();
    await Promise.race([gone, new Promise((r) => setTimeout(r, 5000))]);
  }
  killServerGroup(); // anything it started that outlived it
  if (tmp) { fs.rmSync(tmp, { recursive: true, force: true }); tmp = null; }
}

function fail(msg) { throw new Error(msg); }

function run(cmd, args, opts) {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: 60_000, ...opts });
  if (r.error) fail(`${cmd} ${args.join(' ')}: ${r.error.message}`);
  if (r.status !== 0) fail(`${cmd} ${args.join(' ')} exited with ${r.status ?? r.signal}:\n${r.stdout}${r.stderr}`);
  return r;
}

function tail(text, lines = 40) { return text.split('\n').slice(-lines).join('\n'); }

// Starts the server in its own process group; resolves with the port from "listening on HOST:PORT".
function startServer(cmd, args, cwd, timeoutMs) {
  log(`starting: ${[cmd, ...args].join(' ')}  (cwd ${cwd})`);
  server = spawn(cmd, args, { cwd, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(
      `no "listening on HOST:PORT" line from the server within ${timeoutMs / 1000} s; its output:\n${tail(serverLog)}`)), timeoutMs);
    const onData = (chunk) => {
      serverLog += chunk;
      const m = /listening on \S+:(\d+)/.exec(serverLog);
      if (m) { clearTimeout(timer); resolve(Number(m[1])); }
    };
    server.stdout.setEncoding('utf8').on('data', onData);
    server.stderr.setEncoding('utf8').on('data', onData);
    server.on('error', (e) => { clearTimeout(timer); reject(new Error(`cannot start ${cmd}: ${e.message}`)); });
    server.on('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`the server exited (${code ?? signal}) before listening; its output:\n${tail(serverLog)}`));
    });
  });
}

// Waits until #id's text is `expected` (a string, or a predicate on the text).
async function waitText(page, label, id, expected, what) {
  const test = typeof expected === 'function' ? expected : (t) => t === expected;
  const deadline = Date.now() + WAIT_MS;
  let text;
  for (;;) {
    text = (await page.locator(`#${id}`).textContent({ timeout: WAIT_MS }).catch(() => null))?.trim();
    if (text != null && test(text)) return text;
    if (Date.now() > deadline) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  fail(`${label}: #${id} shows ${JSON.stringify(text)} after ${WAIT_MS / 1000} s, expected ${what ?? JSON.stringify(expected)}`);
}

async function bothShow(pages, value, after) {
  for (const [label, page] of pages) await waitText(page, label, 'value', String(value));
  check(`after ${after}: both pages show ${value}`);
}

async function main() {
  const started = Date.now();
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'stateroom-browser-'));
  let port;
  if (serveWasm) {
    log(`STATEROOM_BROWSER_TEST_SERVE is set: serving ${serveWasm} (not testing new/dev)`);
    const template = path.resolve(here, '../../src/cli/templates/index.html');
    const staticDir = path.join(tmp, 'static');
    fs.mkdirSync(staticDir);
    fs.writeFileSync(path.join(staticDir, 'index.html'), fs.readFileSync(template, 'utf8').replaceAll('{{name}}', NAME));
    port = await startServer(bin, ['serve', serveWasm, '--port', '0', '--host', '127.0.0.1', '--static', staticDir], tmp, SERVE_MS);
  } else {
    log(`running: ${bin} new ${NAME}  (cwd ${tmp})`);
    run(bin, ['new', NAME], { cwd: tmp });
    const project = path.join(tmp, NAME);
    for (const f of ['stateroom.toml', 'static/index.html']) {
      if (!fs.existsSync(path.join(project, f))) fail(`\`stateroom new ${NAME}\` did not create ${NAME}/${f}`);
    }
    check(`\`stateroom new ${NAME}\` created ${NAME}/stateroom.toml and ${NAME}/static/index.html`);
    port = await startServer(bin, ['dev', '0'], project, BUILD_MS);
  }
  check(`server listening on port ${port} after ${((Date.now() - started) / 1000).toFixed(1)} s`);
  const url = `http://127.0.0.1:${port}/`;

  browser = await chromium.launch({ executablePath: CHROMIUM, args: LAUNCH_ARGS, headless: true, timeout: 60_000 });
  log(`launched ${CHROMIUM} ${browser.version()}`);
  const pageErrors = [];
  const pages = [];
  for (const label of ['page 1', 'page 2']) {
    const context = await browser.newContext({ viewport: { width: 480, height: 600 } });
    const page = await context.newPage();
    page.on('pageerror', (e) => pageErrors.push(`${label}: ${e.message}`));
    page.on('console', (m) => { if (m.type() === 'error') pageErrors.push(`${label}: console error: ${m.text()}`); });
    const response = await page.goto(url, { timeout: WAIT_MS });
    if (!response || response.status() !== 200) fail(`${label}: GET ${url} answered ${response?.status()}`);
    pages.push([label, page]);
  }
  check(`both pages loaded ${url}`);

  const title = await pages[0][1].title();
  if (!title.includes(NAME) || title.includes('{{')) fail(`page title is ${JSON.stringify(title)}, expected it to name "${NAME}"`);
  const heading = (await pages[0][1].locator('h1').textContent())?.trim();
  if (heading !== NAME) fail(`page heading is ${JSON.stringify(heading)}, expected ${JSON.stringify(NAME)}`);
  check(`title ${JSON.stringify(title)} and heading name the project`);

  for (const [label, page] of pages) {
    await waitText(page, label, 'status', 'connected');
    for (const id of ['increment', 'decrement']) {
      if (!(await page.locator(`#${id}`).isEnabled())) fail(`${label}: #${id} is disabled while connected`);
    }
    const value = await waitText(page, label, 'value', (t) => !/\d/.test(t), 'a placeholder (no digits) before any change');
    if (label === 'page 1') check(`before any click page 1 shows the placeholder ${JSON.stringify(value)}`);
  }
  check('both pages show "connected" with the buttons enabled');

  await pages[0][1].click('#increment', { timeout: WAIT_MS });
  await bothShow(pages, 1, 'increment in page 1');
  await pages[1][1].click('#increment', { timeout: WAIT_MS });
  await bothShow(pages, 2, 'increment in page 2');
  await pages[0][1].click('#decrement', { timeout: WAIT_MS });
  await bothShow(pages, 1, 'decrement in page 1');

  // The two pages side by side, composed in a third page from their own screenshots.
  const shots = [];
  for (const [, page] of pages) shots.push((await page.screenshot()).toString('base64'));
  const composer = await (await browser.newContext({ viewport: { width: 984, height: 620 } })).newPage();
  await composer.setContent(`<body style="margin:0;padding:8px;background:#888;display:flex;gap:8px">${
    shots.map((s) => `<img src="data:image/png;base64,${s}" width="480" height="600">`).join('')}</body>`);
  fs.mkdirSync(path.dirname(path.resolve(screenshotPath)), { recursive: true });
  await composer.screenshot({ path: screenshotPath });
  check(`screenshot of both pages saved to ${screenshotPath}`);

  if (pageErrors.length) fail(`errors in the pages:\n  ${pageErrors.join('\n  ')}`);
  check('no JavaScript errors in the pages');

  // Graceful stop: SIGTERM to the server process (not its group), exit code 0 within 15 s.
  const exited = new Promise((resolve) => {
    if (server.exitCode !== null || server.signalCode !== null) resolve([server.exitCode, server.signalCode]);
    else server.once('exit', (code, signal) => resolve([code, signal]));
  });
  server.kill('SIGTERM');
  const result = await Promise.race([exited, new Promise((r) => setTimeout(() => r(null), EXIT_MS))]);
  if (!result) fail(`the server did not exit within ${EXIT_MS / 1000} s of SIGTERM; its output:\n${tail(serverLog)}`);
  const [code, signal] = result;
  if (code !== 0) fail(`the server exited with ${code ?? signal} after SIGTERM, expected 0; its output:\n${tail(serverLog)}`);
  check('the server exited with 0 within 15 s of SIGTERM');

  // Nothing it started may outlive it (e.g. the service process of `stateroom dev`).
  const groupDeadline = Date.now() + 3000;
  for (;;) {
    try { process.kill(-server.pid, 0); } catch { break; } // ESRCH: the group is empty
    if (Date.now() > groupDeadline) fail('processes started by the server are still running 3 s after it exited');
    await new Promise((r) => setTimeout(r, 100));
  }
  check('no process the server started outlived it');

  for (const [label, page] of pages) {
    await waitText(page, label, 'status', (t) => t !== 'connected', 'not "connected" once the server stopped');
    if (await page.locator('#increment').isEnabled()) fail(`${label}: #increment is enabled while disconnected`);
  }
  check('both pages show the disconnection and disable the buttons');
  log(`${checks} checks passed in ${((Date.now() - started) / 1000).toFixed(1)} s`);
}

const watchdog = setTimeout(async () => {
  console.error(`browser-test: FAIL: the test did not finish within ${TOTAL_MS / 1000} s`);
  await cleanup();
  process.exit(1);
}, TOTAL_MS);

let status = 0;
try {
  await main();
  console.log(`browser-test: ${checks} passed, 0 failed`);
} catch (e) {
  console.error(`browser-test: FAIL: ${e.message}`);
  console.log(`browser-test: ${checks} passed, 1 failed`);
  status = 1;
} finally {
  clearTimeout(watchdog);
  await cleanup();
}
process.exit(status);
