// Numbers, money and times as operators read them. Money is integer micro-USD everywhere;
// it becomes dollars only here, for display.

const integer = new Intl.NumberFormat("en-US");

export function formatCount(n: number): string {
  return integer.format(n);
}

/** Large counts shortened for chart axes and tiles: 1.2k, 3.4M. */
export function formatCompact(n: number): string {
  return new Intl.NumberFormat("en-US", { notation: "compact", maximumFractionDigits: 1 }).format(n);
}

/** Micro-USD as dollars: cents for amounts of a dollar or more, more digits below. */
export function formatUsd(microUsd: number): string {
  const dollars = microUsd / 1_000_000;
  // Cheap requests cost fractions of a cent: say that there was spend, not "$0.0000".
  if (microUsd > 0 && microUsd < 100) return "<$0.0001";
  const digits = microUsd !== 0 && Math.abs(dollars) < 1 ? 4 : 2;
  return `$${dollars.toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits })}`;
}

/** Dollars typed by a person ("12.50") as integer micro-USD, or null when not a number. */
export function parseUsd(text: string): number | null {
  const trimmed = text.trim().replace(/^\$/, "");
  if (!/^\d+(\.\d{1,6})?$/.test(trimmed)) return null;
  const [whole, fraction = ""] = trimmed.split(".");
  return Number(whole) * 1_000_000 + Number(fraction.padEnd(6, "0"));
}

/** Micro-USD as the dollars a form shows ("12.5"). */
export function usdInput(microUsd: number | null | undefined): string {
  if (microUsd === null || microUsd === undefined) return "";
  return String(microUsd / 1_000_000);
}

export function formatPercent(part: number, whole: number): string {
  if (whole === 0) return "0%";
  const value = (part / whole) * 100;
  return `${value < 10 && value > 0 ? value.toFixed(1) : Math.round(value)}%`;
}

/** A stored time in the reader's locale, to the minute. */
export function formatTime(iso: string | null | undefined): string {
  if (!iso) return "—";
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return iso;
  return date.toLocaleString("en-US", {
    year: "numeric",
    month: "short",
    day: "numeric",
    hour: "2-digit",
    minute: "2-digit",
  });
}

/** How long ago, coarsely: "just now", "5 min ago", "3 h ago", "2 days ago". */
export function formatAgo(iso: string | null | undefined, now: Date = new Date()): string {
  if (!iso) return "never";
  const seconds = (now.getTime() - new Date(iso).getTime()) / 1000;
  if (Number.isNaN(seconds)) return iso;
  if (seconds < 60) return "just now";
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min ago`;
  if (seconds < 86400) return `${Math.floor(seconds / 3600)} h ago`;
  return `${Math.floor(seconds / 86400)} days ago`;
}

/** A limit, or "unlimited". */
export function formatLimit(value: number | null | undefined, unit = ""): string {
  if (value === null || value === undefined) return "unlimited";
  return `${formatCount(value)}${unit}`;
}

/** Bytes in binary units: 512 B, 1.5 KiB, 64 MiB. */
export function formatBytes(n: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = n;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return unit === 0 ? `${value} B` : `${value < 10 ? value.toFixed(1) : Math.round(value)} ${units[unit]}`;
}
