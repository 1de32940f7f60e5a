// The frame of every signed-in page: navigation for the role, who is signed in, theme and
// sign-out. Without a session it sends you to sign in and brings you back afterwards.
"use client";

import Link from "next/link";
import { usePathname, useRouter } from "next/navigation";
import { useEffect, useState, useSyncExternalStore, type ReactNode } from "react";

import { readsAll, useRole } from "@/lib/role";
import type { Role } from "@/lib/schemas";
import { useSession } from "@/lib/session";
import { type ThemeChoice, useTheme } from "@/lib/theme";

const NAV: { href: string; label: string; show: (role: Role | null) => boolean }[] = [
  { href: "/", label: "Dashboard", show: () => true },
  { href: "/keys", label: "Keys", show: () => true },
  { href: "/usage", label: "Usage", show: () => true },
  { href: "/users", label: "Users", show: readsAll },
  { href: "/teams", label: "Teams", show: readsAll },
  { href: "/providers", label: "Providers & routes", show: readsAll },
  { href: "/cache", label: "Cache", show: readsAll },
  { href: "/audit", label: "Audit log", show: readsAll },
];

function isCurrent(pathname: string, href: string): boolean {
  const path = pathname.replace(/\/$/, "") || "/";
  return href === "/" ? path === "/" : path === href || path.startsWith(`${href}/`);
}

/** Sends to the sign-in page, to come back to this one. */
function useRequireSession(): boolean {
  const router = useRouter();
  const token = useSession((s) => s.token);
  // sessionStorage is read after the first render; wait for it before deciding.
  const hydrated = useSyncExternalStore(
    (done) => useSession.persist.onFinishHydration(done),
    () => useSession.persist.hasHydrated(),
    () => false,
  );
  useEffect(() => {
    if (hydrated && token === null) {
      const here = `${window.location.pathname}${window.location.search}`;
      router.replace(`/login?next=${encodeURIComponent(here)}`);
    }
  }, [hydrated, token, router]);
  return hydrated && token !== null;
}

export function AppShell({ children }: { children: ReactNode }) {
  const ready = useRequireSession();
  const pathname = usePathname();
  const router = useRouter();
  const role = useRole();
  const user = useSession((s) => s.user);
  const signOut = useSession((s) => s.signOut);
  const theme = useTheme((s) => s.choice);
  const setTheme = useTheme((s) => s.setChoice);
  const [menuOpen, setMenuOpen] = useState(false);

  if (!ready) {
    return (
      <p role="status" className="p-6 text-sm text-slate-500">
        Checking your session…
      </p>
    );
  }

  const links = NAV.filter((item) => item.show(role));
  return (
    <div className="min-h-screen bg-slate-50 dark:bg-slate-950">
      <a
        href="#main"
        className="sr-only focus:not-sr-only focus:absolute focus:left-2 focus:top-2 focus:z-50 focus:rounded focus:bg-white focus:p-2 dark:focus:bg-slate-900"
      >
        Skip to content
      </a>
      <header className="sticky top-0 z-30 border-b border-slate-200 bg-white/90 backdrop-blur dark:border-slate-800 dark:bg-slate-900/90">
        <div className="mx-auto flex h-14 max-w-7xl items-center gap-3 px-4">
          <button
            type="button"
            className="rounded p-1.5 hover:bg-slate-100 md:hidden dark:hover:bg-slate-800"
            aria-label="Menu"
            aria-expanded={menuOpen}
            aria-controls="nav"
            onClick={() => setMenuOpen((open) => !open)}
          >
            <svg aria-hidden="true" viewBox="0 0 20 20" className="h-5 w-5" fill="currentColor">
              <path d="M3 5h14v2H3zM3 9h14v2H3zM3 13h14v2H3z" />
            </svg>
          </button>
          <Link href="/" className="flex items-center gap-2 font-semibold">
            <span
              aria-hidden="true"
              className="grid h-7 w-7 place-items-center rounded-md bg-indigo-600 text-sm text-white"
            >
              T
            </span>
            Tollgate
          </Link>
          <div className="ml-auto flex items-center gap-2 text-sm">
            <span
              className="hidden max-w-[16rem] truncate text-slate-600 sm:inline dark:text-slate-300"
              title={user?.email}
            >
              {user?.email}
            </span>
            <span className="hidden rounded bg-slate-100 px-1.5 py-0.5 text-xs font-medium sm:inline dark:bg-slate-800">
              {role}
            </span>
            <label className="sr-only" htmlFor="theme">
              Theme
            </label>
            <select
              id="theme"
              value={theme}
              onChange={(e) => setTheme(e.target.value as ThemeChoice)}
              className="rounded-md border border-slate-300 bg-white px-1.5 py-1 text-xs dark:border-slate-600 dark:bg-slate-900"
            >
              <option value="system">Auto theme</option>
              <option value="light">Light</option>
              <option value="dark">Dark</option>
            </select>
            <button
              type="button"
              onClick={() => {
                signOut();
                router.replace("/login");
              }}
              className="whitespace-nowrap rounded-md border border-slate-300 px-2.5 py-1 hover:bg-slate-50 dark:border-slate-600 dark:hover:bg-slate-800"
            >
              Sign out
            </button>
          </div>
        </div>
      </header>
      <div className="mx-auto flex max-w-7xl">
        <nav
          id="nav"
          aria-label="Main"
          className={`${menuOpen ? "block" : "hidden"} fixed inset-x-0 top-14 z-20 border-b border-slate-200 bg-white p-3 shadow md:static md:block md:w-52 md:shrink-0 md:border-0 md:bg-transparent md:shadow-none dark:border-slate-800 dark:bg-slate-900 md:dark:bg-transparent`}
        >
          <ul className="space-y-1">
            {links.map((item) => {
              const current = isCurrent(pathname, item.href);
              return (
                <li key={item.href}>
                  <Link
                    href={item.href}
                    aria-current={current ? "page" : undefined}
                    onClick={() => setMenuOpen(false)}
                    className={`block rounded-md px-3 py-2 text-sm font-medium ${
                      current
                        ? "bg-indigo-50 text-indigo-800 dark:bg-indigo-950 dark:text-indigo-200"
                        : "text-slate-700 hover:bg-slate-100 dark:text-slate-300 dark:hover:bg-slate-800"
                    }`}
                  >
                    {item.label}
                  </Link>
                </li>
              );
            })}
          </ul>
        </nav>
        <main id="main" className="min-w-0 flex-1 px-4 py-6 md:px-8">
          {children}
        </main>
      </div>
    </div>
  );
}
