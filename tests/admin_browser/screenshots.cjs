// Screenshots of the docsync admin as a new user sees it (not run by pytest).
//
//   npm install playwright-core   (somewhere outside the repository)
//   NODE_PATH=/that/node_modules node tests/admin_browser/screenshots.cjs \
//       http://127.0.0.1:8891 /tmp/admin-shots
//
// Uses Debian's chromium (/usr/bin/chromium, or CHROMIUM=...); logs in as
// admin / admin-pass-123 (tests/admin_browser/seed.py makes it) and saves
// PNGs of the document changelist, each document's change page, the squash
// action's result and the delete confirmation.
"use strict";

const fs = require("fs");
const path = require("path");
const { chromium } = require("playwright-core");

const [base = "http://127.0.0.1:8891", out = "/tmp/admin-shots"] = process.argv.slice(2);

async function main() {
  fs.mkdirSync(out, { recursive: true });
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  const problems = [];
  page.on("console", (msg) => msg.type() === "error" && problems.push(`console: ${msg.text()}`));
  page.on("response", (r) => r.status() >= 400 && problems.push(`${r.status()} ${r.url()}`));
  const shot = async (name, full = true) => {
    await page.screenshot({ path: path.join(out, `${name}.png`), fullPage: full });
    console.log(`${name}: ${page.url()} "${await page.title()}"`);
  };

  await page.goto(`${base}/admin/login/?next=/admin/docsync/document/`);
  await page.fill("#id_username", "admin");
  await page.fill("#id_password", "admin-pass-123");
  await Promise.all([page.waitForNavigation(), page.click("input[type=submit]")]);
  await shot("01-changelist");

  const links = await page.$$eval("#result_list tbody th a", (as) => as.map((a) => a.href));
  let n = 2;
  for (const link of links) {
    await page.goto(link);
    await shot(`${String(n++).padStart(2, "0")}-change-${link.split("/").slice(-3, -2)[0]}`);
  }

  // The change page's "Squash now" button, on the first document.
  await page.goto(links[links.length - 1]);
  const squashButton = await page.$(".object-tools form button");
  if (squashButton) {
    await Promise.all([page.waitForNavigation(), squashButton.click()]);
    await shot(`${String(n++).padStart(2, "0")}-squashed-from-change-page`);
  } else {
    problems.push("no Squash now button on the change page");
  }

  // The squash action on every document.
  await page.goto(`${base}/admin/docsync/document/`);
  await page.check("#action-toggle");
  await page.selectOption("select[name=action]", "squash_now");
  await Promise.all([page.waitForNavigation(), page.click("button[name=index]")]);
  await shot(`${String(n++).padStart(2, "0")}-after-squash`);

  // The delete confirmation of the first document (not confirmed).
  await page.goto(links[links.length - 1]);
  const deleteLink = await page.$("a.deletelink");
  if (deleteLink) {
    await Promise.all([page.waitForNavigation(), deleteLink.click()]);
    await shot(`${String(n++).padStart(2, "0")}-delete-confirmation`);
  } else {
    problems.push("no delete link on the change page");
  }
  await browser.close();
  console.log(problems.length ? `PROBLEMS:\n${problems.join("\n")}` : "no HTTP or console errors");
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
