// The session: token, user and role, in memory and in sessionStorage (so a reload keeps
// it, a new tab or a closed browser does not); cleared on logout or when the API says the
// token is no longer good.
import { create } from "zustand";
import { createJSONStorage, persist } from "zustand/middleware";

type Role = "admin" | "member" | "viewer";

export interface SessionUser {
  id: number;
  email: string;
  role: Role;
}

interface Session {
  token: string | null;
  user: SessionUser | null;
  expiresAt: string | null;
  /** Set when the session ended by itself (expired), to say so on the login page. */
  expired: boolean;
  signIn: (token: string, user: SessionUser, expiresAt: string) => void;
  signOut: () => void;
  expire: () => void;
}

export const useSession = create<Session>()(
  persist(
    (set) => ({
      token: null,
      user: null,
      expiresAt: null,
      expired: false,
      signIn: (token, user, expiresAt) => set({ token, user, expiresAt, expired: false }),
      signOut: () => set({ token: null, user: null, expiresAt: null, expired: false }),
      // Several calls may fail with 401 at once: the first one ends the session, the others
      // must not clear the note that it ended.
      expire: () => set((s) => ({ token: null, user: null, expiresAt: null, expired: s.expired || s.token !== null })),
    }),
    {
      name: "tollgate-session",
      storage: createJSONStorage(() => sessionStorage),
      partialize: (s) => ({ token: s.token, user: s.user, expiresAt: s.expiresAt }),
    },
  ),
);
