"use client";

import { useRouter } from "next/navigation";
import { useState, type FormEvent } from "react";
import { z } from "zod";

import { TextField } from "@/components/TextField";
import { ApiError, call } from "@/lib/api";
import { TokenResponse } from "@/lib/schemas";
import { useSession } from "@/lib/session";

const Credentials = z.object({
  email: z.string().trim().min(1, "Enter your email").email("Enter an email address"),
  password: z.string().min(1, "Enter your password"),
});

type Field = "email" | "password";

/** Where to go after logging in: the page the user was sent here from, if it is ours. */
function nextPage(): string {
  if (typeof window === "undefined") return "/";
  const next = new URLSearchParams(window.location.search).get("next") ?? "/";
  return next.startsWith("/") && !next.startsWith("//") ? next : "/";
}

export default function LoginPage() {
  const router = useRouter();
  const signIn = useSession((s) => s.signIn);
  const expired = useSession((s) => s.expired);
  const [email, setEmail] = useState("");
  const [password, setPassword] = useState("");
  const [errors, setErrors] = useState<Partial<Record<Field, string>>>({});
  const [failure, setFailure] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);

  async function submit(event: FormEvent) {
    event.preventDefault();
    setFailure(null);
    const checked = Credentials.safeParse({ email, password });
    if (!checked.success) {
      const found: Partial<Record<Field, string>> = {};
      for (const issue of checked.error.issues) {
        const field = issue.path[0] as Field;
        found[field] ??= issue.message;
      }
      setErrors(found);
      return;
    }
    setErrors({});
    setBusy(true);
    try {
      const session = await call(TokenResponse, "POST", "/api/auth/login", checked.data);
      signIn(session.token, session.user, session.expires_at);
      router.replace(nextPage());
    } catch (e) {
      const error = e instanceof ApiError ? e : new ApiError(String(e), 0);
      if (error.param === "email" || error.param === "password") {
        setErrors({ [error.param]: error.message });
      } else {
        setFailure(error.message);
      }
    } finally {
      setBusy(false);
    }
  }

  return (
    <main className="mx-auto flex min-h-screen max-w-sm flex-col justify-center px-6">
      <h1 className="mb-6 text-2xl font-semibold">Sign in to Tollgate</h1>
      {expired && (
        <p role="status" className="mb-4 rounded border border-amber-400 bg-amber-50 p-3 text-sm text-amber-900 dark:bg-amber-950 dark:text-amber-100">
          Your session has ended. Sign in again to go on.
        </p>
      )}
      <form onSubmit={submit} noValidate className="space-y-4" aria-label="Sign in">
        <TextField
          id="email"
          label="Email"
          type="email"
          autoComplete="username"
          value={email}
          onChange={setEmail}
          error={errors.email}
        />
        <TextField
          id="password"
          label="Password"
          type="password"
          autoComplete="current-password"
          value={password}
          onChange={setPassword}
          error={errors.password}
        />
        {failure && (
          <p role="alert" className="rounded border border-red-400 bg-red-50 p-3 text-sm text-red-800 dark:bg-red-950 dark:text-red-100">
            {failure}
          </p>
        )}
        <button
          type="submit"
          disabled={busy}
          className="w-full rounded bg-slate-900 px-4 py-2 font-medium text-white disabled:opacity-60 dark:bg-slate-100 dark:text-slate-900"
        >
          {busy ? "Signing in…" : "Sign in"}
        </button>
      </form>
    </main>
  );
}
