// The interface follows the browser's language (English or French), the switch
// overrides it, and the main path works from the keyboard alone.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { serverAndBrowser, waitFor } from '../lib/harness.js';

const env = serverAndBrowser();

/** Presses Tab until the element with `id` has focus, as a keyboard user
 * would reach it; fails if it is not reachable within `most` presses. */
async function tabTo(page, id, most = 40) {
  for (let i = 0; i < most; i++) {
    if (await page.evaluate(() => document.activeElement?.id) === id) return;
    await page.keyboard.press('Tab');
  }
  assert.equal(await page.evaluate(() => document.activeElement?.id), id, `#${id} is reachable with Tab`);
}

test('French browser gets French; the switch goes back to English', async () => {
  const context = await env.browser.newContext({ locale: 'fr-FR' });
  const page = await context.newPage();
  await page.goto(env.server.url);
  assert.equal(await page.textContent('#new-meeting'), 'Nouvelle réunion');
  assert.equal(await page.getAttribute('html', 'lang'), 'fr');
  await page.selectOption('#lang-select', 'en');
  assert.equal(await page.textContent('#new-meeting'), 'New meeting');
  // The choice is remembered.
  await page.reload();
  assert.equal(await page.textContent('#new-meeting'), 'New meeting');
  await context.close();
});

test('keyboard only: create a meeting, name yourself, join, mute, leave', async () => {
  const context = await env.browser.newContext({ locale: 'en-US' });
  const page = await context.newPage();
  await page.goto(env.server.url);
  // Tab from the top of the page to "New meeting".
  await tabTo(page, 'new-meeting', 10);
  await page.keyboard.press('Enter');
  await page.waitForURL(/\/m\//);
  await page.locator('#display-name').waitFor();
  // The name field has focus when no name is remembered.
  await waitFor(page, () => document.activeElement?.id === 'display-name', 5000, 'name field focused');
  await page.keyboard.type('Keyboard User');
  await page.keyboard.press('Enter');
  await waitFor(page, () => window.aparte.diagnostics().me !== null, 10000, 'joined');
  await tabTo(page, 'mic-toggle');
  await page.keyboard.press('Enter');
  await waitFor(page, () => document.querySelector('#mic-toggle').getAttribute('aria-pressed') === 'false', 5000, 'mic off');
  await tabTo(page, 'leave');
  await page.keyboard.press('Space');
  await waitFor(page, () => !document.querySelector('#left').hidden, 5000, 'left screen');
  // Every button and field has an accessible name.
  const unnamed = await page.$$eval('button, input, select', (els) =>
    els.filter((e) => {
      const label = e.getAttribute('aria-label') || e.textContent.trim() || (e.id && document.querySelector(`label[for="${e.id}"]`)?.textContent.trim()) || e.closest('label')?.textContent.trim();
      return !label;
    }).map((e) => e.id || e.outerHTML.slice(0, 60)),
  );
  assert.deepEqual(unnamed, []);
  await context.close();
});

test('English and French have the same texts, and every text the page names exists', async () => {
  const page = await env.browser.newPage();
  await page.goto(env.server.url);
  const { en, fr, named } = await page.evaluate(async () => {
    const i18n = await import('/js/i18n.js');
    const named = [...document.querySelectorAll('[data-i18n]')].map((el) => el.dataset.i18n)
      .concat([...document.querySelectorAll('[data-i18n-label]')].map((el) => el.dataset.i18nLabel));
    return { en: i18n.keysOf('en'), fr: i18n.keysOf('fr'), named };
  });
  assert.ok(en.length > 50, `English has its texts (${en.length})`);
  assert.deepEqual(en.filter((k) => !fr.includes(k)), [], 'keys missing in French');
  assert.deepEqual(fr.filter((k) => !en.includes(k)), [], 'keys missing in English');
  assert.ok(named.length > 10, `the page names texts (${named.length})`);
  assert.deepEqual([...new Set(named)].filter((k) => !en.includes(k)), [], 'texts the page names but nobody wrote');
  await page.close();
});
