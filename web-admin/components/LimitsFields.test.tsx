import { render, screen } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { useState } from "react";

import { inputsOf, limitsFromInputs, LimitsFields, type LimitInputs } from "./LimitsFields";

const empty: LimitInputs = {
  rpm_limit: "",
  tpm_limit: "",
  concurrency_limit: "",
  budget_usd: "",
  budget_period: "month",
};

describe("limitsFromInputs", () => {
  it("makes empty inputs no limit (null), and sends no budget period without a budget", () => {
    expect(limitsFromInputs(empty)).toEqual({
      values: {
        rpm_limit: null,
        tpm_limit: null,
        concurrency_limit: null,
        budget_micro_usd: null,
        budget_period: null,
      },
    });
  });

  it("reads whole numbers and dollars as micro-USD, with the budget's period", () => {
    const { values, errors } = limitsFromInputs({
      rpm_limit: "60",
      tpm_limit: " 100000 ",
      concurrency_limit: "4",
      budget_usd: "12.50",
      budget_period: "day",
    });
    expect(errors).toBeUndefined();
    expect(values).toEqual({
      rpm_limit: 60,
      tpm_limit: 100000,
      concurrency_limit: 4,
      budget_micro_usd: 12_500_000,
      budget_period: "day",
    });
  });

  it("puts an error on rpm_limit for text that is not a number", () => {
    const { values, errors } = limitsFromInputs({ ...empty, rpm_limit: "abc" });
    expect(values).toBeUndefined();
    expect(errors).toEqual({ rpm_limit: "Requests per minute must be a whole number" });
  });

  it("refuses a limit of zero", () => {
    expect(limitsFromInputs({ ...empty, concurrency_limit: "0" }).errors).toEqual({
      concurrency_limit: "Concurrency must be at least 1",
    });
  });

  it("puts an error on budget_micro_usd for an amount that is not one", () => {
    const { errors } = limitsFromInputs({ ...empty, budget_usd: "abc" });
    expect(errors).toEqual({ budget_micro_usd: "Enter an amount in dollars, e.g. 25 or 12.50" });
  });
});

describe("inputsOf", () => {
  it("shows stored limits as text, dollars for the budget", () => {
    expect(
      inputsOf({
        rpm_limit: 60,
        tpm_limit: null,
        concurrency_limit: undefined,
        budget_micro_usd: 12_500_000,
        budget_period: "total",
      }),
    ).toEqual({ rpm_limit: "60", tpm_limit: "", concurrency_limit: "", budget_usd: "12.5", budget_period: "total" });
    expect(inputsOf(null)).toEqual(empty);
  });
});

describe("LimitsFields", () => {
  it("labels every input and shows each error next to its field", async () => {
    function Form() {
      const [inputs, setInputs] = useState(empty);
      return (
        <LimitsFields
          idPrefix="key"
          inputs={inputs}
          onChange={setInputs}
          errors={{ rpm_limit: "Requests per minute must be a whole number", budget_micro_usd: "Too much" }}
        />
      );
    }
    render(<Form />);
    expect(screen.getByRole("group", { name: "Limits (empty: no limit)" })).toBeInTheDocument();
    const rpm = screen.getByRole("textbox", { name: "Requests per minute" });
    expect(rpm).toBeInvalid();
    expect(rpm).toHaveAccessibleDescription("Requests per minute must be a whole number");
    expect(screen.getByRole("textbox", { name: "Budget (USD)" })).toHaveAccessibleDescription("Too much");
    expect(screen.getByRole("textbox", { name: "Tokens per minute" })).not.toBeInvalid();
    await userEvent.type(screen.getByRole("textbox", { name: "Concurrent requests" }), "8");
    expect(screen.getByRole("textbox", { name: "Concurrent requests" })).toHaveValue("8");
    await userEvent.selectOptions(screen.getByRole("combobox", { name: "Budget period" }), "per day");
    expect(screen.getByRole("combobox", { name: "Budget period" })).toHaveValue("day");
  });
});
