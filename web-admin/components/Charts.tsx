// Charts drawn as SVG by hand (no chart library: a few kB instead of a few hundred), each
// with a text alternative: a summary label and the numbers in a table for screen readers.
"use client";

import Link from "next/link";
import { useEffect, useRef, useState } from "react";

import { formatCompact } from "@/lib/format";

export function TimeBars({
  label,
  data,
  format,
  axisFormat,
  bucket,
}: {
  label: string;
  data: readonly { bucket: string; value: number }[];
  format: (n: number) => string;
  /** How the vertical axis writes its values (default: compact numbers, 1.2k). */
  axisFormat?: (n: number) => string;
  bucket: "hour" | "day";
}) {
  // Drawn at the width it is shown at, so text keeps its size on a phone and a wide screen.
  const box = useRef<HTMLElement>(null);
  const [width, setWidth] = useState(640);
  useEffect(() => {
    const node = box.current;
    if (!node || typeof ResizeObserver === "undefined") return;
    const observer = new ResizeObserver(
      ([entry]) => entry && setWidth(Math.max(240, Math.round(entry.contentRect.width))),
    );
    observer.observe(node);
    return () => observer.disconnect();
  }, []);
  const height = 180;
  const left = 60;
  const bottom = 22;
  const top = 10;
  const plot = height - bottom - top;
  const max = Math.max(1, ...data.map((d) => d.value));
  const slot = data.length ? (width - left) / data.length : 0;
  const bar = Math.max(1, slot * 0.75);
  const total = data.reduce((sum, d) => sum + d.value, 0);
  const when = (iso: string) =>
    bucket === "hour"
      ? new Date(iso).toLocaleString("en-US", { month: "short", day: "numeric", hour: "2-digit" })
      : new Date(iso).toLocaleDateString("en-US", { month: "short", day: "numeric" });
  const ticks = [0, 0.5, 1].map((f) => f * max);
  const axis = axisFormat ?? formatCompact;
  const labelEvery = Math.max(1, Math.ceil(data.length / Math.max(2, Math.floor(width / 110))));
  return (
    <figure ref={box} className="relative">
      <svg
        role="img"
        aria-label={`${label}: ${format(total)} in total over ${data.length} ${bucket === "hour" ? "hours" : "days"}`}
        viewBox={`0 0 ${width} ${height}`}
        width={width}
        height={height}
        className="block max-w-full text-indigo-500"
      >
        {ticks.map((t) => {
          const y = top + plot * (1 - t / max);
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
              <text x={left - 6} y={y + 4} textAnchor="end" className="fill-slate-500 text-[11px]">
                {axis(t)}
              </text>
            </g>
          );
        })}
        {data.map((d, i) => {
          const h = (plot * d.value) / max;
          const x = left + i * slot + (slot - bar) / 2;
          return (
            <g key={d.bucket}>
              <rect x={x} y={height - bottom - h} width={bar} height={h} fill="currentColor" rx={1}>
                <title>{`${when(d.bucket)}: ${format(d.value)}`}</title>
              </rect>
              {i % labelEvery === 0 && (
                <text
                  x={x + bar / 2}
                  y={height - 6}
                  // The last labels would run past the right edge: end them at their bar.
                  textAnchor={x + bar / 2 > width - 60 ? "end" : "middle"}
                  className="fill-slate-500 text-[11px]"
                >
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
