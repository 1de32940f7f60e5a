// Light, dark or the system's choice, remembered in localStorage and applied as the `dark`
// class on <html> (Tailwind's dark variant is bound to that class in globals.css).
import { useEffect } from "react";
import { create } from "zustand";
import { createJSONStorage, persist } from "zustand/middleware";

export type ThemeChoice = "system" | "light" | "dark";

interface ThemeState {
  choice: ThemeChoice;
  setChoice: (choice: ThemeChoice) => void;
}

export const useTheme = create<ThemeState>()(
  persist((set) => ({ choice: "system", setChoice: (choice) => set({ choice }) }), {
    name: "tollgate-theme",
    storage: createJSONStorage(() => localStorage),
  }),
);

/** Keeps <html class="dark"> in step with the choice (and the system, when it follows it). */
export function useApplyTheme() {
  const choice = useTheme((s) => s.choice);
  useEffect(() => {
    const media = window.matchMedia("(prefers-color-scheme: dark)");
    const apply = () => {
      const dark = choice === "dark" || (choice === "system" && media.matches);
      document.documentElement.classList.toggle("dark", dark);
      document.documentElement.style.colorScheme = dark ? "dark" : "light";
    };
    apply();
    media.addEventListener("change", apply);
    return () => media.removeEventListener("change", apply);
  }, [choice]);
}
