// Charts drawn as SVG by hand (no chart library: a few kB instead of a few hundred), each
// with a text alternative: a summary label and the numbers in a table for screen readers.
"use client";

import Link from "next/link";

import { formatCompact } from "@/lib/format";

export function TimeBars({
  label,
  data,
  format,
  bucket,
}: {
  label: string;
  data: readonly { bucket: string; value: number }[];
  format: (n: number) => string;
  bucket: "hour" | "day";
}) {
  const width = 640;
  const height = 180;
  const left = 44;
  const bottom = 22;
  const max = Math.max(1, ...data.map((d) => d.value));
  const slot = data.length ? (width - left) / data.length : 0;
  const bar = Math.max(1, slot * 0.75);
  const total = data.reduce((sum, d) => sum + d.value, 0);
  const when = (iso: string) =>
    bucket === "hour"
      ? new Date(iso).toLocaleString("en-US", { month: "short", day: "numeric", hour: "2-digit" })
      : new Date(iso).toLocaleDateString("en-US", { month: "short", day: "numeric" });
  const ticks = [0, 0.5, 1].map((f) => f * max);
  const labelEvery = Math.max(1, Math.ceil(data.length / 6));
  return (
    <figure>
      <svg
        role="img"
        aria-label={`${label}: ${format(total)} in total over ${data.length} ${bucket === "hour" ? "hours" : "days"}`}
        viewBox={`0 0 ${width} ${height}`}
        className="h-44 w-full text-indigo-500"
        preserveAspectRatio="none"
      >
        {ticks.map((t) => {
          const y = (height - bottom) * (1 - t / max);
          return (
            <g key={t}>
              <line
                x1={left}
                x2={width}
                y1={y}
                y2={y}
                className="stroke-slate-200 dark:stroke-slate-800"
                strokeWidth={1}
              />
              <text x={left - 6} y={y + 4} textAnchor="end" className="fill-slate-500 text-[10px]">
                {formatCompact(t)}
              </text>
            </g>
          );
        })}
        {data.map((d, i) => {
          const h = ((height - bottom) * d.value) / max;
          const x = left + i * slot + (slot - bar) / 2;
          return (
            <g key={d.bucket}>
              <rect x={x} y={height - bottom - h} width={bar} height={h} fill="currentColor" rx={1}>
                <title>{`${when(d.bucket)}: ${format(d.value)}`}</title>
              </rect>
              {i % labelEvery === 0 && (
                <text x={x + bar / 2} y={height - 6} textAnchor="middle" className="fill-slate-500 text-[10px]">
                  {when(d.bucket)}
                </text>
              )}
            </g>
          );
        })}
      </svg>
      <table className="sr-only">
        <caption>{label}</caption>
        <tbody>
          {data
            .filter((d) => d.value > 0)
            .map((d) => (
              <tr key={d.bucket}>
                <th scope="row">{when(d.bucket)}</th>
                <td>{format(d.value)}</td>
              </tr>
            ))}
        </tbody>
      </table>
    </figure>
  );
}

/** Horizontal bars for a top-N list, largest first. */
export function BarList({
  label,
  rows,
  format,
}: {
  label: string;
  rows: readonly { name: string; value: number; href?: string }[];
  format: (n: number) => string;
}) {
  const max = Math.max(1, ...rows.map((r) => r.value));
  return (
    <ul aria-label={label} className="space-y-2">
      {rows.map((r) => (
        <li key={r.name} className="text-sm">
          <div className="flex justify-between gap-2">
            {r.href ? (
              <Link href={r.href} className="truncate text-indigo-700 hover:underline dark:text-indigo-300">
                {r.name}
              </Link>
            ) : (
              <span className="truncate">{r.name}</span>
            )}
            <span className="tabular-nums text-slate-600 dark:text-slate-300">{format(r.value)}</span>
          </div>
          <div className="mt-1 h-1.5 rounded bg-slate-100 dark:bg-slate-800" aria-hidden="true">
            <div className="h-1.5 rounded bg-indigo-500" style={{ width: `${(r.value / max) * 100}%` }} />
          </div>
        </li>
      ))}
    </ul>
  );
}
