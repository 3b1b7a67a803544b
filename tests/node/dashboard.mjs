// The dashboard in a real headless Chromium (Debian's, driven by playwright-core), against a
// running `sluice run`. Run by tests/python/test_dashboard.py:
//   node dashboard.mjs REST_URL BAD_INPUT_FILE SCREENSHOT_DIR
// Prints one `ok <step>` line per step; any failure exits non-zero with the reason.
import { chromium } from "playwright-core";
import fs from "node:fs";
import path from "node:path";

const [restUrl, badFile, shots] = process.argv.slice(2);
const executablePath = process.env.CHROMIUM || "/usr/bin/chromium";
const STEP = 30_000;

const browser = await chromium.launch({ executablePath, args: ["--no-sandbox"] });
const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
const problems = [];
page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
page.on("console", (m) => { if (m.type() === "error") problems.push(`console: ${m.text()}`); });
const ok = (what) => console.log(`ok ${what}`);
const rateOf = (edge) => page.locator(`text.rate[data-edge="${edge}"]`);
const flowing = async (edge) =>
  page.waitForFunction((sel) => {
    const t = document.querySelector(sel);
    return t && /^[1-9][\d.]*( [kMG])?\/s$/.test(t.textContent);
  }, `text.rate[data-edge="${edge}"]`, { timeout: STEP });

try {
  await page.goto(`${restUrl}/ui`);
  await page.locator('g.node[data-id="source:orders_in"]').waitFor({ timeout: STEP });
  await page.locator('g.node[data-id="topic:orders"]').waitFor();
  await page.locator('g.node[data-id="sink:orders_out"]').waitFor();
  await page.locator('g.node[data-id="topic:orders-dlq"]').waitFor();
  ok("graph shows sources, topics and sinks");

  const edge = "source:orders_in->topic:orders";
  await flowing(edge);
  await flowing("topic:orders->sink:orders_out");
  ok(`edges show non-zero rates (${await rateOf(edge).textContent()})`);
  await page.screenshot({ path: path.join(shots, "dashboard-running.png"), fullPage: true });

  // Pause with the button: the state changes in the table and the graph, the flow stops.
  await page.click('tr[data-connector="orders_in"] button[data-action="pause"]');
  await page.locator('tr[data-connector="orders_in"][data-state="PAUSED"]').waitFor({ timeout: STEP });
  await page.locator('g.node[data-id="source:orders_in"][data-state="PAUSED"]').waitFor({ timeout: STEP });
  await page.waitForFunction((sel) => document.querySelector(sel)?.textContent === "0/s",
    `text.rate[data-edge="${edge}"]`, { timeout: STEP });
  ok("pause: state PAUSED in table and graph, rate down to 0/s");
  await page.screenshot({ path: path.join(shots, "dashboard-paused.png"), fullPage: true });
  await page.click('tr[data-connector="orders_in"] button[data-action="resume"]');
  await page.locator('tr[data-connector="orders_in"][data-state="RUNNING"]').waitFor({ timeout: STEP });
  await flowing(edge);
  ok("resume: RUNNING and flowing again");

  // A failed task: its trace is readable in full; fix the input, restart it with the button.
  const failedRow = page.locator('tr[data-connector="bad_in"]');
  await failedRow.locator('button[data-action="restart-task"]').waitFor({ timeout: STEP });
  await failedRow.locator("details summary").first().click();
  const trace = await failedRow.locator("pre.trace").first().textContent();
  if (!/not valid JSON/.test(trace)) throw new Error(`the failed task's trace does not say why: ${trace}`);
  ok("failed task shown with its trace");
  await page.screenshot({ path: path.join(shots, "dashboard-failed-task.png"), fullPage: true });
  fs.writeFileSync(badFile, fs.readFileSync(badFile, "utf8").replace("{broken", '{"x":1}'));
  await failedRow.locator('button[data-action="restart-task"]').click();
  await page.locator('tr[data-connector="bad_in"] .badge.s-RUNNING').waitFor({ timeout: STEP });
  await page.waitForFunction(() => !document.querySelector('tr[data-connector="bad_in"] button[data-action="restart-task"]'),
    null, { timeout: STEP });
  ok("restart task: RUNNING after the input was fixed");

  // Stop is destructive: it asks first; cancelling changes nothing, confirming stops.
  const stopButton = 'tr[data-connector="orders_out"] button[data-action="stop"]';
  await page.click(stopButton);
  await page.locator("dialog#confirm[open]").waitFor();
  await page.click('dialog#confirm button[value="cancel"]');
  await page.waitForTimeout(1500);
  if (await page.locator('tr[data-connector="orders_out"][data-state="STOPPED"]').count()) throw new Error("cancel stopped the connector");
  await page.click(stopButton);
  await page.click("dialog#confirm #confirm-ok");
  await page.locator('tr[data-connector="orders_out"][data-state="STOPPED"]').waitFor({ timeout: STEP });
  ok("stop asks for confirmation, then stops");

  // Keyboard: a graph node takes focus and opens its detail with Enter.
  await page.focus('g.node[data-id="topic:orders"]');
  await page.keyboard.press("Enter");
  await page.locator("#detail h3", { hasText: "Topic orders" }).waitFor({ timeout: STEP });
  ok("keyboard opens a node's detail");

  // The message browser: an Avro value decoded at a chosen offset.
  await page.click('tr[data-topic="items"] button[data-action="browse"]');
  await page.fill("#browse-offset", "5");
  await page.click('#browse-form button[type="submit"]');
  const row = page.locator('#records tr[data-offset="5"]');
  await row.waitFor({ timeout: STEP });
  const shown = await row.locator("td.value").textContent();
  if (!shown.includes('"sku": "sku-5"') || !shown.includes("Avro, schema")) throw new Error(`offset 5 of items shows ${shown}`);
  if (await page.locator("#records tbody tr").count() !== 5) throw new Error("offsets 5 to 9 expected");
  ok("message browser: Avro value decoded at offset 5");
  await page.screenshot({ path: path.join(shots, "dashboard-messages.png"), fullPage: true });
  // A dead-lettered record shows why, in its headers.
  await page.click('tr[data-topic="orders-dlq"] button[data-action="browse"]');
  await page.locator('#records tr[data-offset="0"] .header-dlq').first().waitFor({ timeout: STEP });
  ok("message browser: dead-letter headers shown");

  // Two versions of a schema side by side: the added field marked on the newer side.
  await page.click('tr[data-subject="items-value"] button[data-action="diff"]', { timeout: STEP });
  const added = page.locator("#diff-right span.add", { hasText: '"name": "note"' });
  await added.waitFor({ timeout: STEP });
  if (await page.locator("#diff-left span.del").count() !== 0) throw new Error("a field was only added, yet lines show as removed");
  ok("schemas: versions 1 and 2 of items-value diffed, the new field marked");
  await page.locator("#diff").screenshot({ path: path.join(shots, "dashboard-schema-diff.png") });

  await page.setViewportSize({ width: 390, height: 844 });
  await page.waitForTimeout(500);
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  if (overflow > 2) throw new Error(`at phone width the page is ${overflow}px wider than the screen`);
  await page.screenshot({ path: path.join(shots, "dashboard-phone.png"), fullPage: true });
  ok("readable at phone width (tables and graph scroll inside their boxes)");

  if (problems.length) throw new Error(problems.join("; "));
  ok("no script errors");
} catch (e) {
  await page.screenshot({ path: path.join(shots, "dashboard-failure.png"), fullPage: true }).catch(() => {});
  console.error(`FAILED: ${e.stack || e}`);
  if (problems.length) console.error(problems.join("\n"));
  process.exitCode = 1;
} finally {
  await browser.close();
}
