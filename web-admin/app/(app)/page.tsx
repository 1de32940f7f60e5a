"use client";

import { PageHeader } from "@/components/ui";

export default function Dashboard() {
  return <PageHeader title="Dashboard" />;
}
