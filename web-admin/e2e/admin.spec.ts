// The operator's story in a real browser against a real gateway: sign in, create a member
// and a key with rpm 3, use it through the proxy with the official openai package, see the
// request and then the refusals on the key's page and the dashboard, revoke it and see the
// proxy refuse it, then sign in as the member (only their keys) and as a viewer (no write
// controls, and the API refuses a write even when the UI is bypassed). Every page is
// screenshotted at desktop and phone width into test-results/screenshots/.
import { execFileSync } from "node:child_process";
import { mkdirSync } from "node:fs";
import { join, resolve } from "node:path";

import AxeBuilder from "@axe-core/playwright";
import { expect, test, type Page } from "@playwright/test";

import { ADMIN_EMAIL, ADMIN_PASSWORD, MASTER_KEY } from "./global-setup";

test.describe.configure({ mode: "serial" });

const ROOT = resolve(__dirname, "../..");
const PYTHON = process.env.TOLLGATE_PYTHON ?? join(ROOT, ".venv/bin/python");
const SHOTS = join(__dirname, "../test-results/screenshots");
const MEMBER = { email: "member@example.com", password: "member-password-0123" };
const VIEWER = { email: "viewer@example.com", password: "viewer-password-0123" };

const adminUrl = () => process.env.TOLLGATE_ADMIN_URL ?? "";
const proxyUrl = () => process.env.TOLLGATE_PROXY_URL ?? "";

/** Sends `n` chat completions with the openai package; the statuses it saw. */
function openai(key: string, n: number, model = "gpt-4o-mini"): number[] {
  const script = `
import sys, openai
client = openai.OpenAI(base_url=sys.argv[1], api_key=sys.argv[2], max_retries=0)
seen = []
for _ in range(int(sys.argv[4])):
    try:
        client.chat.completions.create(model=sys.argv[3], messages=[{"role": "user", "content": "Hello from the web UI test"}])
        seen.append(200)
    except openai.APIStatusError as e:
        seen.append(e.status_code)
print(" ".join(map(str, seen)))
`;
  const out = execFileSync(PYTHON, ["-c", script, proxyUrl(), key, model, String(n)], { encoding: "utf8" });
  return out.trim().split(" ").map(Number);
}

async function signIn(page: Page, email: string, password: string) {
  await page.goto(`${adminUrl()}/login`);
  await page.getByLabel("Email").fill(email);
  await page.getByLabel("Password").fill(password);
  await page.getByRole("button", { name: "Sign in" }).click();
  await expect(page.getByRole("navigation", { name: "Main" })).toBeVisible();
}

async function signOut(page: Page) {
  await page.getByRole("button", { name: "Sign out" }).click();
  await expect(page.getByRole("heading", { name: "Sign in to Tollgate" })).toBeVisible();
}

/** A full-page screenshot at desktop width and one at phone width, after an accessibility
 *  check of the page (axe: WCAG 2 A and AA rules; serious and critical findings fail). */
async function shoot(page: Page, name: string) {
  mkdirSync(SHOTS, { recursive: true });
  await expect(page.getByRole("status").filter({ hasText: /Loading/ })).toHaveCount(0);
  const audit = await new AxeBuilder({ page }).withTags(["wcag2a", "wcag2aa"]).analyze();
  const serious = audit.violations
    .filter((v) => v.impact === "serious" || v.impact === "critical")
    .map((v) => `${v.id}: ${v.help} (${v.nodes.map((n) => n.target.join(" ")).join(", ")})`);
  expect(serious, `accessibility of ${name}`).toEqual([]);
  await page.screenshot({ path: join(SHOTS, `${name}-desktop.png`), fullPage: true });
  await page.setViewportSize({ width: 390, height: 844 });
  // Nothing may widen the page past a phone's width (wide tables scroll inside their box).
  expect(await page.evaluate(() => document.documentElement.scrollWidth), `${name} at 390 px`).toBeLessThanOrEqual(390);
  await page.screenshot({ path: join(SHOTS, `${name}-phone.png`), fullPage: true });
  await page.setViewportSize({ width: 1280, height: 800 });
}

/** Reloads until `check` passes: usage reaches the database within a second or so. */
async function eventually(page: Page, check: () => Promise<void>) {
  await expect(async () => {
    await page.reload();
    await check();
  }).toPass({ timeout: 20_000, intervals: [500, 1000] });
}

let keySecret = "";
let keyPage = "";
let serviceSecret = "";

test("the bootstrap admin signs in; a wrong password is refused inline", async ({ page }) => {
  await page.goto(`${adminUrl()}/login`);
  await shoot(page, "login");
  await page.getByLabel("Email").fill(ADMIN_EMAIL);
  await page.getByLabel("Password").fill("not-the-password");
  await page.getByRole("button", { name: "Sign in" }).click();
  // Next.js has a route announcer with the same role outside `main`.
  await expect(page.getByRole("main").getByRole("alert")).toContainText(/wrong email or password/i);
  await expect(page.getByLabel("Email")).toHaveValue(ADMIN_EMAIL);
  await page.getByLabel("Password").fill(ADMIN_PASSWORD);
  await page.getByRole("button", { name: "Sign in" }).click();
  await expect(page.getByRole("heading", { name: "Dashboard" })).toBeVisible();
});

test("some traffic for the charts: two service keys used through the proxy", async ({ request }) => {
  for (const [name, model, n] of [
    ["checkout-service", "gpt-4o", 6],
    ["support-bot", "gpt-4o-mini", 9],
  ] as const) {
    const made = await request.post(`${adminUrl()}/api/keys`, {
      headers: { authorization: `Bearer ${MASTER_KEY}` },
      data: { name },
    });
    expect(made.status()).toBe(201);
    const { secret } = (await made.json()) as { secret: string };
    expect(openai(secret, n, model).every((s) => s === 200)).toBe(true);
    if (name === "support-bot") serviceSecret = secret;
  }
});

test("an admin creates a member and a viewer", async ({ page }) => {
  await signIn(page, ADMIN_EMAIL, ADMIN_PASSWORD);
  await page.getByRole("link", { name: "Users" }).click();
  for (const [user, role] of [
    [MEMBER, "member"],
    [VIEWER, "viewer"],
  ] as const) {
    await page.getByRole("button", { name: "New user" }).click();
    const dialog = page.getByRole("dialog");
    await dialog.getByLabel("Email").fill(user.email);
    await dialog.getByLabel("Password").fill("short");
    await dialog.getByLabel("Role").selectOption(role);
    await dialog.getByRole("button", { name: "Create user" }).click();
    // Refused before or by the server, next to the field, with the input kept.
    await expect(dialog.getByLabel("Password")).toHaveAttribute("aria-invalid", "true");
    await expect(dialog.getByLabel("Email")).toHaveValue(user.email);
    await dialog.getByLabel("Password").fill(user.password);
    await dialog.getByRole("button", { name: "Create user" }).click();
    await expect(page.getByRole("dialog")).toHaveCount(0);
    await expect(page.getByRole("cell", { name: user.email, exact: true })).toBeVisible();
  }
  await shoot(page, "users");
});

test("an admin creates a key with rpm 3 for the member and sees its secret once", async ({ page, context }) => {
  await context.grantPermissions(["clipboard-read", "clipboard-write"]);
  await signIn(page, ADMIN_EMAIL, ADMIN_PASSWORD);
  await page.getByRole("link", { name: "Keys" }).click();
  await expect(page.getByRole("link", { name: "support-bot" })).toBeVisible();
  await page.getByRole("button", { name: "New key" }).click();
  const dialog = page.getByRole("dialog", { name: "New key" });
  await dialog.getByLabel("Name").fill("e2e-member-key");
  await dialog.getByLabel("Owner").selectOption({ label: MEMBER.email });
  await dialog.getByLabel("Requests per minute").fill("three");
  await dialog.getByRole("button", { name: "Create key" }).click();
  await expect(dialog.getByLabel("Requests per minute")).toHaveAttribute("aria-invalid", "true");
  await expect(dialog.getByLabel("Name")).toHaveValue("e2e-member-key");
  await shoot(page, "key-create");
  await dialog.getByLabel("Requests per minute").fill("3");
  await dialog.getByRole("button", { name: "Create key" }).click();

  const reveal = page.getByRole("dialog", { name: /created/ });
  await expect(reveal.getByRole("note")).toContainText("shown only this once");
  keySecret = await reveal.getByLabel("Secret").inputValue();
  expect(keySecret).toMatch(/^tg_/);
  await reveal.getByRole("button", { name: "Copy" }).click();
  await expect(reveal.getByRole("status")).toHaveText("Copied to the clipboard.");
  expect(await page.evaluate(() => navigator.clipboard.readText())).toBe(keySecret);
  await shoot(page, "key-secret");
  await reveal.getByRole("button", { name: "I have stored it" }).click();

  // Never again: not in the list, not on the key's page.
  await expect(page.getByRole("link", { name: "e2e-member-key" })).toBeVisible();
  expect(await page.content()).not.toContain(keySecret);
  await page.getByLabel("Search").fill("e2e-member");
  await expect(page.getByRole("row")).toHaveCount(2);
  await shoot(page, "keys");
  await page.getByRole("link", { name: "e2e-member-key" }).click();
  await expect(page.getByRole("heading", { name: "e2e-member-key" })).toBeVisible();
  keyPage = page.url();
  expect(await page.content()).not.toContain(keySecret);
});

test("a request with the key shows on its page and on the dashboard", async ({ page }) => {
  expect(openai(keySecret, 1)).toEqual([200]);
  await signIn(page, ADMIN_EMAIL, ADMIN_PASSWORD);
  await page.goto(keyPage);
  const usage = page.getByRole("region", { name: "Usage of this key" });
  await eventually(page, async () => {
    await expect(usage.getByRole("definition").first()).toHaveText("1", { timeout: 1000 });
  });
  await page.getByRole("link", { name: "Dashboard" }).click();
  await expect(page.getByRole("list", { name: "Top keys by spend" })).toContainText("e2e-member-key");
});

test("going over rpm 3 is refused, and the refusals show with their reason", async ({ page }) => {
  const statuses = openai(keySecret, 4);
  expect(statuses.filter((s) => s === 429).length).toBeGreaterThanOrEqual(2);
  await signIn(page, ADMIN_EMAIL, ADMIN_PASSWORD);
  await page.goto(keyPage);
  const refusals = page.getByRole("region", { name: "Recent refusals" });
  await eventually(page, async () => {
    await expect(refusals.getByRole("list", { name: "By reason" })).toContainText("requests per minute", {
      timeout: 1000,
    });
  });
  await expect(refusals.getByRole("table")).toContainText("Rate limit reached");
  await shoot(page, "key");
  await page.getByRole("link", { name: "Dashboard" }).click();
  await expect(page.getByRole("list", { name: "Quota refusals by dimension" })).toContainText("requests per minute");
  await shoot(page, "dashboard");
  await page.getByLabel("Theme").selectOption("dark");
  await page.screenshot({ path: join(SHOTS, "dashboard-dark-desktop.png"), fullPage: true });
  await page.getByLabel("Theme").selectOption("system");
});

test("a revoked key is refused by the proxy", async ({ page }) => {
  await signIn(page, ADMIN_EMAIL, ADMIN_PASSWORD);
  await page.goto(keyPage);
  await page.getByRole("button", { name: "Revoke" }).click();
  const confirm = page.getByRole("dialog", { name: /Revoke/ });
  await confirm.getByRole("button", { name: "Revoke key" }).click();
  await expect(page.getByText("revoked", { exact: true })).toBeVisible();
  await expect(page.getByRole("button", { name: "Revoke" })).toHaveCount(0);
  expect(openai(keySecret, 1)).toEqual([401]);
});

test("an admin edits a key's limits and rotates it, with the keyboard", async ({ page }) => {
  await signIn(page, ADMIN_EMAIL, ADMIN_PASSWORD);
  await page.getByRole("link", { name: "Keys" }).click();
  await page.getByRole("link", { name: "support-bot" }).click();
  await expect(page.getByRole("heading", { name: "support-bot" })).toBeVisible();

  // Keyboard: the dialog takes focus, Escape closes it and gives focus back.
  await page.getByRole("button", { name: "Edit key" }).focus();
  await page.keyboard.press("Enter");
  const edit = page.getByRole("dialog", { name: "Edit support-bot" });
  await expect(edit.getByLabel("Name")).toBeFocused();
  await page.keyboard.press("Escape");
  await expect(edit).toHaveCount(0);
  await expect(page.getByRole("button", { name: "Edit key" })).toBeFocused();

  await page.keyboard.press("Enter");
  await edit.getByLabel("Requests per minute").fill("120");
  await edit.getByLabel("Budget (USD)").fill("25");
  await edit.getByRole("button", { name: "Save changes" }).click();
  await expect(edit).toHaveCount(0);
  const settings = page.getByRole("region", { name: "Settings" });
  await expect(settings).toContainText("120");
  await expect(settings).toContainText("$25.00 per month");

  await page.getByRole("button", { name: "Rotate" }).click();
  const rotate = page.getByRole("dialog", { name: "Rotate support-bot" });
  await rotate.getByLabel("Old secret keeps working for").selectOption("0");
  await rotate.getByRole("button", { name: "Rotate key" }).click();
  const reveal = page.getByRole("dialog", { name: /New secret/ });
  const fresh = await reveal.getByLabel("Secret").inputValue();
  expect(fresh).not.toBe(serviceSecret);
  await reveal.getByRole("button", { name: "I have stored it" }).click();
  // The old secret ended at once; the new one works.
  expect(openai(serviceSecret, 1)).toEqual([401]);
  expect(openai(fresh, 1)).toEqual([200]);
});

test("the other pages, with their screenshots", async ({ page }) => {
  await signIn(page, ADMIN_EMAIL, ADMIN_PASSWORD);
  await page.getByRole("link", { name: "Usage" }).click();
  await expect(page.getByRole("table", { name: "Usage by model" })).toContainText("gpt-4o");
  await page.getByLabel("Group").selectOption("key");
  await page.getByRole("button", { name: "Show" }).click();
  await expect(page.getByRole("table", { name: "Usage by key" })).toContainText("support-bot");
  const download = page.waitForEvent("download");
  await page.getByRole("button", { name: "Download CSV" }).click();
  expect((await download).suggestedFilename()).toMatch(/^tollgate-usage-.*\.csv$/);
  await shoot(page, "usage");

  await page.getByRole("link", { name: "Teams" }).click();
  await page.getByRole("button", { name: "New team" }).click();
  await page.getByRole("dialog").getByLabel("Name").fill("platform");
  await page
    .getByRole("dialog")
    .getByRole("button", { name: /Create/ })
    .click();
  await expect(page.getByRole("link", { name: "platform" })).toBeVisible();
  await shoot(page, "teams");
  await page.getByRole("link", { name: "platform" }).click();
  await expect(page.getByRole("heading", { name: "platform" })).toBeVisible();
  await shoot(page, "team");

  await page.getByRole("link", { name: "Providers & routes" }).click();
  await expect(page.getByText("gpt-4o-mini").first()).toBeVisible();
  await shoot(page, "providers");

  await page.getByRole("link", { name: "Audit log" }).click();
  await expect(page.getByRole("cell", { name: "key.revoke", exact: true })).toBeVisible();
  await shoot(page, "audit");

  // The checkout service asked gpt-4o the same question six times: one miss, five hits.
  await page.getByRole("link", { name: "Cache" }).click();
  const row = page.getByRole("table", { name: "Cache by model" }).getByRole("row", { name: /gpt-4o/ });
  await expect(row).toContainText("83%");
  await expect(row.getByRole("cell").nth(3)).toHaveText("5");
  await shoot(page, "cache");
  await row.getByRole("button", { name: "Purge" }).click();
  await page.getByRole("dialog").getByRole("button", { name: "Purge" }).click();
  await expect(page.getByRole("status")).toHaveText("Purged 1 entry of gpt-4o.");
});

test("a member sees only their own keys", async ({ page }) => {
  await signIn(page, MEMBER.email, MEMBER.password);
  await expect(page.getByRole("link", { name: "Users" })).toHaveCount(0);
  await page.getByRole("link", { name: "Keys" }).click();
  await page.getByRole("button", { name: "New key" }).click();
  const dialog = page.getByRole("dialog", { name: "New key" });
  await dialog.getByLabel("Name").fill("my-laptop");
  await dialog.getByRole("button", { name: "Create key" }).click();
  await page.getByRole("dialog").getByRole("button", { name: "I have stored it" }).click();
  await expect(page.getByRole("link", { name: "my-laptop" })).toBeVisible();
  await page.getByLabel("Status").selectOption("all");
  await expect(page.getByRole("link", { name: "e2e-member-key" })).toBeVisible();
  await expect(page.getByRole("link", { name: "support-bot" })).toHaveCount(0);
  await expect(page.getByRole("link", { name: "checkout-service" })).toHaveCount(0);
  await shoot(page, "member-keys");
});

test("a viewer sees no write controls, and the API refuses a write anyway", async ({ page }) => {
  await signIn(page, VIEWER.email, VIEWER.password);
  await page.getByRole("link", { name: "Keys" }).click();
  await expect(page.getByRole("link", { name: "support-bot" })).toBeVisible();
  await expect(page.getByRole("button", { name: "New key" })).toHaveCount(0);
  await page.getByRole("link", { name: "support-bot" }).click();
  await expect(page.getByRole("heading", { name: "support-bot" })).toBeVisible();
  await expect(page.getByRole("button", { name: /Revoke|Rotate|Edit/ })).toHaveCount(0);
  await page.getByRole("link", { name: "Users" }).click();
  await expect(page.getByRole("cell", { name: MEMBER.email, exact: true })).toBeVisible();
  await expect(page.getByRole("button", { name: "New user" })).toHaveCount(0);
  await page.getByRole("link", { name: "Providers & routes" }).click();
  await expect(page.getByRole("button", { name: "Add credential" })).toHaveCount(0);

  // The server stays the authority: the viewer's own token cannot write.
  const status = await page.evaluate(async () => {
    const session = JSON.parse(sessionStorage.getItem("tollgate-session") ?? "{}") as { state?: { token?: string } };
    const answer = await fetch("/api/keys", {
      method: "POST",
      headers: { authorization: `Bearer ${session.state?.token ?? ""}`, "content-type": "application/json" },
      body: JSON.stringify({ name: "sneaky" }),
    });
    return answer.status;
  });
  expect(status).toBe(403);
  await signOut(page);
});

test("an expired session goes to sign-in and comes back to the page", async ({ page }) => {
  await signIn(page, ADMIN_EMAIL, ADMIN_PASSWORD);
  await page.evaluate(() => {
    const stored = JSON.parse(sessionStorage.getItem("tollgate-session") ?? "{}") as { state: { token: string } };
    stored.state.token = "expired-or-forged";
    sessionStorage.setItem("tollgate-session", JSON.stringify(stored));
  });
  await page.goto(`${adminUrl()}/usage`);
  await expect(page.getByText("Your session has ended")).toBeVisible();
  expect(new URL(page.url()).searchParams.get("next")).toBe("/usage");
  await page.getByLabel("Email").fill(ADMIN_EMAIL);
  await page.getByLabel("Password").fill(ADMIN_PASSWORD);
  await page.getByRole("button", { name: "Sign in" }).click();
  await expect(page.getByRole("heading", { name: "Usage" })).toBeVisible();
});
