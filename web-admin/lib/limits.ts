// Limits and model lists as the pages show and read them.
import { formatLimit, formatUsd } from "./format";
import type { Limits } from "./schemas";

/** The limits in one line: "60 rpm · 100,000 tpm · $25.00/month", or "no limits". */
export function limitsSummary(limits: Limits): string {
  const parts: string[] = [];
  if (limits.rpm_limit != null) parts.push(`${formatLimit(limits.rpm_limit)} rpm`);
  if (limits.tpm_limit != null) parts.push(`${formatLimit(limits.tpm_limit)} tpm`);
  if (limits.concurrency_limit != null) parts.push(`${formatLimit(limits.concurrency_limit)} at once`);
  if (limits.budget_micro_usd != null) {
    const period = limits.budget_period === "total" ? " total" : limits.budget_period ? `/${limits.budget_period}` : "";
    parts.push(`${formatUsd(limits.budget_micro_usd)}${period}`);
  }
  return parts.length ? parts.join(" · ") : "no limits";
}

/** Comma- or space-separated model names; none → null (every model). */
export function modelsFromText(text: string): string[] | null {
  const names = text
    .split(/[\s,]+/)
    .map((m) => m.trim())
    .filter(Boolean);
  return names.length ? Array.from(new Set(names)) : null;
}

/** Whether a stored model list and the one typed say the same. */
export function sameModels(a: readonly string[] | null | undefined, b: readonly string[] | null): boolean {
  // An empty stored list shows as an empty field, like null: leaving it alone keeps it.
  if (!a?.length || !b) return !a?.length && !b;
  return a.length === b.length && a.every((m, i) => m === b[i]);
}
