// Tables scroll sideways on narrow screens instead of squeezing; pagination says where you
// are and moves by page.
"use client";

import type { ReactNode } from "react";

import { Button } from "./ui";

export function Table({ caption, head, children }: { caption: string; head: ReactNode; children: ReactNode }) {
  return (
    // `relative`: screen-reader-only text (absolutely positioned) stays inside the scrolling box
    // instead of widening the page.
    // Focusable, so a keyboard can scroll a table wider than the screen.
    <div
      role="group"
      aria-label={caption}
      tabIndex={0}
      className="relative overflow-x-auto rounded-lg border border-slate-200 dark:border-slate-800"
    >
      <table className="min-w-full divide-y divide-slate-200 text-sm dark:divide-slate-800">
        <caption className="sr-only">{caption}</caption>
        <thead className="bg-slate-50 text-left text-xs font-semibold uppercase tracking-wide text-slate-600 dark:bg-slate-900 dark:text-slate-400">
          <tr>{head}</tr>
        </thead>
        <tbody className="divide-y divide-slate-100 bg-white dark:divide-slate-800 dark:bg-slate-950">{children}</tbody>
      </table>
    </div>
  );
}

export function Th({ children, right = false }: { children?: ReactNode; right?: boolean }) {
  return (
    <th scope="col" className={`whitespace-nowrap px-3 py-2 ${right ? "text-right" : ""}`}>
      {children}
    </th>
  );
}

export function Td({
  children,
  right = false,
  className = "",
}: {
  children?: ReactNode;
  right?: boolean;
  className?: string;
}) {
  return (
    <td className={`whitespace-nowrap px-3 py-2 ${right ? "text-right tabular-nums" : ""} ${className}`}>{children}</td>
  );
}

export function Pagination({
  page,
  perPage,
  total,
  onPage,
  label = "Pages",
}: {
  page: number;
  perPage: number;
  total: number;
  onPage: (page: number) => void;
  label?: string;
}) {
  const pages = Math.max(1, Math.ceil(total / perPage));
  const first = total === 0 ? 0 : (page - 1) * perPage + 1;
  const last = Math.min(total, page * perPage);
  return (
    <nav aria-label={label} className="mt-3 flex items-center justify-between gap-2 text-sm">
      <p className="text-slate-600 dark:text-slate-400">{total === 0 ? "None" : `${first}–${last} of ${total}`}</p>
      <div className="flex items-center gap-2">
        <Button small disabled={page <= 1} onClick={() => onPage(page - 1)}>
          Previous
        </Button>
        <span aria-current="page">
          Page {page} of {pages}
        </span>
        <Button small disabled={page >= pages} onClick={() => onPage(page + 1)}>
          Next
        </Button>
      </div>
    </nav>
  );
}
