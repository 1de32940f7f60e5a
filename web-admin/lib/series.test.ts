import type { SeriesPoint } from "./schemas";
import { bucketStart, fillBuckets, rangeOf } from "./series";

function point(bucket: string, requests: number, group?: string): SeriesPoint {
  return {
    bucket,
    group,
    requests,
    prompt_tokens: requests * 10,
    completion_tokens: requests,
    cost_micro_usd: requests * 100,
  };
}

describe("fillBuckets", () => {
  const points = [
    point("2025-01-01T11:00:00Z", 3, "key-a"),
    point("2025-01-01T11:00:00Z", 4, "key-b"),
    point("2025-01-01T13:00:00Z", 5, "key-a"),
  ];

  it("fills the hours with nothing in them with 0 and sums the groups of a bucket", () => {
    expect(fillBuckets(points, "2025-01-01T10:30:00Z", "2025-01-01T14:00:00Z", "hour", "requests")).toEqual([
      { bucket: "2025-01-01T10:00:00.000Z", value: 0 },
      { bucket: "2025-01-01T11:00:00.000Z", value: 7 },
      { bucket: "2025-01-01T12:00:00.000Z", value: 0 },
      { bucket: "2025-01-01T13:00:00.000Z", value: 5 },
    ]);
  });

  it("sums the metric asked for", () => {
    const from = "2025-01-01T11:00:00Z";
    const to = "2025-01-01T12:00:00Z";
    expect(fillBuckets(points, from, to, "hour", "tokens")).toEqual([
      { bucket: "2025-01-01T11:00:00.000Z", value: 77 },
    ]);
    expect(fillBuckets(points, from, to, "hour", "cost")).toEqual([{ bucket: "2025-01-01T11:00:00.000Z", value: 700 }]);
  });

  it("fills days", () => {
    const days = fillBuckets(
      [point("2025-01-02T00:00:00Z", 2)],
      "2025-01-01T08:00:00Z",
      "2025-01-04T00:00:00Z",
      "day",
      "requests",
    );
    expect(days.map((d) => d.value)).toEqual([0, 2, 0]);
    expect(days[0]?.bucket).toBe("2025-01-01T00:00:00.000Z");
  });

  it("is empty for an empty range", () => {
    expect(fillBuckets(points, "2025-01-01T12:00:00Z", "2025-01-01T12:00:00Z", "hour", "requests")).toEqual([]);
  });
});

describe("bucketStart", () => {
  it("is the start of the UTC hour or day", () => {
    const t = new Date("2025-03-04T05:06:07.890Z");
    expect(bucketStart(t, "hour").toISOString()).toBe("2025-03-04T05:00:00.000Z");
    expect(bucketStart(t, "day").toISOString()).toBe("2025-03-04T00:00:00.000Z");
  });
});

describe("rangeOf", () => {
  const now = new Date("2025-01-10T12:00:30Z");

  it("ends at the next whole minute and spans the named hours", () => {
    expect(rangeOf("24h", now)).toEqual({
      from: "2025-01-09T12:01:00.000Z",
      to: "2025-01-10T12:01:00.000Z",
      bucket: "hour",
    });
  });

  it("uses days for the long ranges", () => {
    const range = rangeOf("30d", now);
    expect(range.bucket).toBe("day");
    expect(range.from).toBe("2024-12-11T12:01:00.000Z");
    expect(rangeOf("7d", now).bucket).toBe("hour");
  });

  it("gives the same range within a minute", () => {
    expect(rangeOf("24h", new Date("2025-01-10T12:00:01Z"))).toEqual(rangeOf("24h", new Date("2025-01-10T12:00:59Z")));
  });
});
