"use client";

import { useQuery } from "@tanstack/react-query";
import { useRouter } from "next/navigation";
import { useEffect } from "react";

import { Me, call } from "@/lib/api";
import { useSession } from "@/lib/session";

/** The signed-in home: who you are, with the way out. Pages for keys, usage and the rest
 *  hang off here as they are built. */
export default function Home() {
  const router = useRouter();
  const token = useSession((s) => s.token);
  const signOut = useSession((s) => s.signOut);
  const me = useQuery({
    queryKey: ["me", token],
    queryFn: () => call(Me, "GET", "/api/auth/me"),
    enabled: token !== null,
  });

  useEffect(() => {
    if (token === null) router.replace(`/login?next=${encodeURIComponent(window.location.pathname)}`);
  }, [token, router]);

  if (token === null) return null;
  return (
    <main className="mx-auto max-w-5xl px-6 py-8">
      <header className="mb-8 flex items-center justify-between">
        <h1 className="text-2xl font-semibold">Tollgate</h1>
        <button
          type="button"
          onClick={() => {
            signOut();
            router.replace("/login");
          }}
          className="rounded border border-slate-300 px-3 py-1 text-sm dark:border-slate-700"
        >
          Sign out
        </button>
      </header>
      {me.isPending && <p role="status">Loading your account…</p>}
      {me.isError && (
        <p role="alert" className="rounded border border-red-400 bg-red-50 p-3 text-sm text-red-800 dark:bg-red-950 dark:text-red-100">
          {me.error.message}
        </p>
      )}
      {me.data && (
        <p>
          Signed in as <strong>{me.data.user?.email ?? "the operator (master key)"}</strong>, role{" "}
          <strong>{me.data.role}</strong>.
        </p>
      )}
    </main>
  );
}
