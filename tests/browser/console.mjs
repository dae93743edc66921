// Opens the runner's console in headless Chromium, checks that it shows the
// jobs and a failed group's error, clicks "retry these" with the admin
// token, and checks that the row was re-queued. Prints what it saw.
// Usage: node console.mjs URL TOKEN SCREENSHOT.png CHROMIUM
import { chromium } from 'playwright-core';

const [url, token, screenshot, executablePath] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath,
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
try {
  const page = await browser.newPage({ viewport: { width: 1100, height: 800 } });
  await page.goto(url);
  await page.locator('#job-faulty h2').waitFor();
  console.log('job faulty shown');
  const error = page.locator('td.error', { hasText: 'user 13 is refused' });
  await error.waitFor();
  console.log('error shown: ' + (await error.textContent()));
  await page.fill('#token', token);
  await page.dispatchEvent('#token', 'change');
  const retried = page.waitForResponse((r) => r.url().endsWith('/retry-failed') && r.request().method() === 'POST');
  await page.locator('tr', { hasText: 'user 13 is refused' }).locator('button').click();
  const response = await retried;
  const body = await response.json();
  if (response.status() !== 200) throw new Error(`retry answered ${response.status()}: ${JSON.stringify(body)}`);
  console.log(`retried ${body.retried}`);
  await page.locator('#said', { hasText: '"retried":1' }).waitFor();
  await page.screenshot({ path: screenshot, fullPage: true });
} finally {
  await browser.close();
}
