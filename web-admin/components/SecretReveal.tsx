// A key's secret, shown once right after it was created or rotated: copy it now, it is not
// stored anywhere the UI or the API can show it again.
"use client";

import { useState } from "react";

import { Dialog } from "./Dialog";
import { Button } from "./ui";

export function SecretReveal({ title, secret, onClose }: { title: string; secret: string; onClose: () => void }) {
  const [copied, setCopied] = useState<"no" | "yes" | "failed">("no");

  async function copy() {
    try {
      await navigator.clipboard.writeText(secret);
      setCopied("yes");
    } catch {
      // Clipboard access can be refused (no HTTPS, no permission): the text stays selectable.
      setCopied("failed");
    }
  }

  return (
    <Dialog title={title} onClose={onClose}>
      <div
        role="note"
        className="mb-3 rounded-md border border-amber-300 bg-amber-50 p-3 text-sm text-amber-900 dark:border-amber-700 dark:bg-amber-950 dark:text-amber-100"
      >
        Copy this secret now. It is shown only this once: Tollgate stores only a hash of it and cannot show it again.
      </div>
      <label htmlFor="secret" className="block text-sm font-medium">
        Secret
      </label>
      <div className="mt-1 flex gap-2">
        <input
          id="secret"
          readOnly
          value={secret}
          onFocus={(e) => e.currentTarget.select()}
          className="w-full rounded-md border border-slate-300 bg-slate-50 px-3 py-2 font-mono text-sm dark:border-slate-600 dark:bg-slate-950"
        />
        <Button onClick={copy}>Copy</Button>
      </div>
      <p role="status" className="mt-1 h-5 text-sm text-slate-600 dark:text-slate-400">
        {copied === "yes"
          ? "Copied to the clipboard."
          : copied === "failed"
            ? "Copying was refused: select the text and copy it."
            : ""}
      </p>
      <div className="mt-4 flex justify-end">
        <Button tone="primary" onClick={onClose}>
          I have stored it
        </Button>
      </div>
    </Dialog>
  );
}
