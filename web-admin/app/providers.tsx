"use client";

import { QueryClient, QueryClientProvider } from "@tanstack/react-query";
import { useState, type ReactNode } from "react";

import { ApiError } from "@/lib/api";
import { useApplyTheme } from "@/lib/theme";

export function Providers({ children }: { children: ReactNode }) {
  useApplyTheme();
  const [client] = useState(
    () =>
      new QueryClient({
        defaultOptions: {
          queries: {
            // A refusal will not change by asking again; a dropped answer may.
            retry: (count, error) => count < 2 && error instanceof ApiError && error.status === 0,
            refetchOnWindowFocus: false,
          },
        },
      }),
  );
  return <QueryClientProvider client={client}>{children}</QueryClientProvider>;
}
