import { formatAgo, formatBytes, formatLimit, formatPercent, formatUsd, parseUsd, usdInput } from "./format";

describe("formatUsd", () => {
  it("shows cents for a dollar or more", () => {
    expect(formatUsd(12_500_000)).toBe("$12.50");
    expect(formatUsd(1_000_000)).toBe("$1.00");
    expect(formatUsd(1_234_567_890)).toBe("$1,234.57");
  });

  it("shows four digits below a dollar", () => {
    expect(formatUsd(1_234)).toBe("$0.0012");
    expect(formatUsd(500_000)).toBe("$0.5000");
  });

  it("says that there was spend too small for four digits", () => {
    expect(formatUsd(99)).toBe("<$0.0001");
    expect(formatUsd(100)).toBe("$0.0001");
  });

  it("shows zero with cents", () => {
    expect(formatUsd(0)).toBe("$0.00");
  });
});

describe("parseUsd", () => {
  it("reads dollars as micro-USD", () => {
    expect(parseUsd("12.50")).toBe(12_500_000);
    expect(parseUsd("25")).toBe(25_000_000);
    expect(parseUsd(" $3.5 ")).toBe(3_500_000);
    expect(parseUsd("0.000001")).toBe(1);
    expect(parseUsd("0")).toBe(0);
  });

  it("refuses more than six decimals", () => {
    expect(parseUsd("1.1234567")).toBeNull();
  });

  it("refuses what is not an amount", () => {
    expect(parseUsd("abc")).toBeNull();
    expect(parseUsd("")).toBeNull();
    expect(parseUsd("-1")).toBeNull();
    expect(parseUsd("1.")).toBeNull();
    expect(parseUsd("1,000")).toBeNull();
  });

  it("round-trips with usdInput", () => {
    expect(usdInput(12_500_000)).toBe("12.5");
    expect(parseUsd(usdInput(12_500_000))).toBe(12_500_000);
    expect(usdInput(null)).toBe("");
    expect(usdInput(undefined)).toBe("");
  });
});

describe("formatPercent", () => {
  it("rounds to a whole percent from 10% up", () => {
    expect(formatPercent(1, 3)).toBe("33%");
    expect(formatPercent(5, 5)).toBe("100%");
  });

  it("keeps one decimal below 10%", () => {
    expect(formatPercent(1, 200)).toBe("0.5%");
    expect(formatPercent(9, 100)).toBe("9.0%");
  });

  it("is 0% for nothing and for an empty whole", () => {
    expect(formatPercent(0, 5)).toBe("0%");
    expect(formatPercent(0, 0)).toBe("0%");
    expect(formatPercent(3, 0)).toBe("0%");
  });
});

describe("formatAgo", () => {
  const now = new Date("2025-01-10T12:00:00Z");

  it("says how long ago, coarsely", () => {
    expect(formatAgo("2025-01-10T11:59:30Z", now)).toBe("just now");
    expect(formatAgo("2025-01-10T11:55:00Z", now)).toBe("5 min ago");
    expect(formatAgo("2025-01-10T09:00:00Z", now)).toBe("3 h ago");
    expect(formatAgo("2025-01-08T11:00:00Z", now)).toBe("2 days ago");
  });

  it("says never for no time and keeps text that is not a time", () => {
    expect(formatAgo(null, now)).toBe("never");
    expect(formatAgo(undefined, now)).toBe("never");
    expect(formatAgo("soon", now)).toBe("soon");
  });
});

describe("formatLimit", () => {
  it("shows a limit or unlimited", () => {
    expect(formatLimit(1500, "/min")).toBe("1,500/min");
    expect(formatLimit(null)).toBe("unlimited");
  });
});

describe("formatBytes", () => {
  it("uses binary units with one decimal below ten", () => {
    expect(formatBytes(0)).toBe("0 B");
    expect(formatBytes(1023)).toBe("1023 B");
    expect(formatBytes(1536)).toBe("1.5 KiB");
    expect(formatBytes(64 * 1024 * 1024)).toBe("64 MiB");
  });
});
