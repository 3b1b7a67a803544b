// The dashboard in headless Firefox (Debian's firefox-esr, driven by puppeteer-core over
// WebDriver BiDi), against a running `sluice run`. Run by tests/python/test_dashboard.py:
//   node dashboard-firefox.mjs REST_URL SCREENSHOT_DIR
// Prints one `ok <step>` line per step; any failure exits non-zero with the reason.
import puppeteer from "puppeteer-core";
import path from "node:path";

const [restUrl, shots] = process.argv.slice(2);
const STEP = 30_000;
const browser = await puppeteer.launch({
  browser: "firefox",
  executablePath: process.env.FIREFOX || "/usr/bin/firefox-esr",
  headless: true,
});
const page = await browser.newPage();
const problems = [];
page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
const ok = (what) => console.log(`ok ${what}`);

try {
  await page.setViewport({ width: 1280, height: 800 });
  await page.goto(`${restUrl}/ui`);
  await page.waitForSelector('g.node[data-id="source:orders_in"]', { timeout: STEP });
  await page.waitForFunction(() => {
    const t = document.querySelector('text.rate[data-edge="source:orders_in->topic:orders"]');
    return t && /^[1-9][\d.]*( [kMG])?\/s$/.test(t.textContent);
  }, { timeout: STEP });
  ok("graph with non-zero rates");
  await page.click('tr[data-connector="orders_in"] button[data-action="pause"]');
  await page.waitForSelector('g.node[data-id="source:orders_in"][data-state="PAUSED"]', { timeout: STEP });
  await page.click('tr[data-connector="orders_in"] button[data-action="resume"]');
  await page.waitForSelector('tr[data-connector="orders_in"][data-state="RUNNING"]', { timeout: STEP });
  ok("pause and resume with the buttons");
  await page.click('tr[data-topic="items"] button[data-action="browse"]');
  await page.$eval("#browse-offset", (e) => { e.value = "3"; });
  await page.click('#browse-form button[type="submit"]');
  await page.waitForFunction(() => {
    const td = document.querySelector('#records tr[data-offset="3"] td.value');
    return td && td.textContent.includes('"sku": "sku-3"');
  }, { timeout: STEP });
  ok("message browser decodes an Avro value");
  await page.screenshot({ path: path.join(shots, "dashboard-firefox.png"), fullPage: true });
  if (problems.length) throw new Error(problems.join("; "));
  ok("no script errors");
} catch (e) {
  await page.screenshot({ path: path.join(shots, "dashboard-firefox-failure.png"), fullPage: true }).catch(() => {});
  console.error(`FAILED: ${e.stack || e}`);
  process.exitCode = 1;
} finally {
  await browser.close();
}
