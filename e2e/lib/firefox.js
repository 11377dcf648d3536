// Firefox ESR for the browser tests: Debian's firefox-esr driven by
// puppeteer-core over WebDriver BiDi (Playwright drives only its own patched
// Firefox builds). Pages are wrapped in the few Playwright page methods the
// harness's helpers use, so `host`, `join`, `enter` and `waitFor` work on a
// Firefox page as on a Chromium one.
//
// Firefox pairs no loopback ICE candidates: the server must listen on another
// address of this host (the host end of an aparte-netlab link) and serve TLS
// (--tls-self-signed), which Firefox accepts here with acceptInsecureCerts.

import puppeteer from 'puppeteer-core';
import { existsSync } from 'node:fs';

export const FIREFOX = process.env.FIREFOX || '/usr/bin/firefox-esr';

/** Launches headless Firefox ESR with fake media devices and no outside traffic. */
export async function launchFirefox() {
  if (!existsSync(FIREFOX)) throw new Error(`the Firefox tests need Firefox ESR at ${FIREFOX}; install it with 'apt-get install firefox-esr' (or set FIREFOX=/path)`);
  return puppeteer.launch({
    browser: 'firefox',
    executablePath: FIREFOX,
    headless: true,
    acceptInsecureCerts: true,
    extraPrefsFirefox: {
      // Fake camera and microphone, granted without a prompt.
      'media.navigator.streams.fake': true,
      'media.navigator.permission.disabled': true,
      // Nothing of Firefox's own talks to the outside during a test.
      'network.captive-portal-service.enabled': false,
      'network.connectivity-service.enabled': false,
      'browser.safebrowsing.malware.enabled': false,
      'browser.safebrowsing.phishing.enabled': false,
      'app.update.enabled': false,
      'datareporting.healthreport.uploadEnabled': false,
      'toolkit.telemetry.enabled': false,
      'intl.locale.requested': 'en-US',
      'intl.accept_languages': 'en-US, en',
      // Autoplay of remote media without a gesture, as Chromium's flag does.
      'media.autoplay.default': 0,
    },
  });
}

/** A new page in its own browser context (own storage) and its own window,
 * recording every request it makes; wrapped as a `FirefoxPage`. Its own
 * window: a page in a background tab is hidden, and a hidden page asks the
 * server to pause the video it receives (as it should). */
export async function newFirefoxPage(browser) {
  const context = await browser.createBrowserContext();
  const page = await context.newPage({ type: 'window' });
  await page.setViewport({ width: 1280, height: 800 });
  const wrapped = new FirefoxPage(page);
  page.on('request', (r) => wrapped.requests.push(r.url()));
  page.on('pageerror', (e) => console.error('firefox page error:', e.message));
  return wrapped;
}

/** The Playwright page methods the harness and tests call, on a puppeteer page. */
export class FirefoxPage {
  constructor(page) {
    this.page = page;
    this.requests = [];
  }

  goto(url) {
    return this.page.goto(url);
  }

  url() {
    return this.page.url();
  }

  async waitForURL(pattern, { timeout = 10000 } = {}) {
    const end = Date.now() + timeout;
    while (!pattern.test(this.page.url())) {
      if (Date.now() > end) throw new Error(`timed out waiting for a URL like ${pattern}; at ${this.page.url()}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  locator(selector) {
    const page = this.page;
    return {
      waitFor: ({ timeout = 10000 } = {}) => page.waitForSelector(selector, { visible: true, timeout }),
      click: ({ timeout = 10000 } = {}) => page.locator(selector).setTimeout(timeout).click(),
    };
  }

  click(selector) {
    return this.locator(selector).click();
  }

  fill(selector, value) {
    return this.page.locator(selector).fill(value);
  }

  /** Playwright's argument order: (fn, arg, {timeout, polling}). */
  waitForFunction(fn, arg, { timeout = 10000, polling = 100 } = {}) {
    return this.page.waitForFunction(fn, { timeout, polling }, arg);
  }

  evaluate(fn, arg) {
    return this.page.evaluate(fn, arg);
  }

  getAttribute(selector, name) {
    return this.page.$eval(selector, (e, n) => e.getAttribute(n), name);
  }

  isVisible(selector) {
    return this.page.$eval(selector, (e) => e.checkVisibility()).catch(() => false);
  }

  $$eval(selector, fn) {
    return this.page.$$eval(selector, fn);
  }

  screenshot(options) {
    return this.page.screenshot(options);
  }
}
