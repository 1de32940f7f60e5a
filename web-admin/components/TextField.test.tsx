import { render, screen } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { useState } from "react";

import { SelectField, TextField } from "./TextField";

function Controlled(props: { error?: string; hint?: string; onValue?: (value: string) => void }) {
  const [value, setValue] = useState("");
  return (
    <TextField
      id="name"
      label="Name"
      value={value}
      onChange={(v) => {
        setValue(v);
        props.onValue?.(v);
      }}
      error={props.error}
      hint={props.hint}
    />
  );
}

describe("TextField", () => {
  it("labels its input", async () => {
    const onValue = jest.fn();
    render(<Controlled onValue={onValue} />);
    const input = screen.getByLabelText("Name");
    expect(input).toBe(screen.getByRole("textbox", { name: "Name" }));
    await userEvent.type(input, "ops");
    expect(input).toHaveValue("ops");
    expect(onValue).toHaveBeenLastCalledWith("ops");
  });

  it("is valid and described by its hint when there is no error", () => {
    render(<Controlled hint="Shown in the key list" />);
    const input = screen.getByRole("textbox", { name: "Name" });
    expect(input).not.toBeInvalid();
    expect(input).toHaveAttribute("aria-invalid", "false");
    expect(input).toHaveAccessibleDescription("Shown in the key list");
  });

  it("announces its error with aria-invalid and aria-describedby", () => {
    render(<Controlled error="Enter a name" hint="Shown in the key list" />);
    const input = screen.getByRole("textbox", { name: "Name" });
    expect(input).toBeInvalid();
    expect(input).toHaveAttribute("aria-invalid", "true");
    expect(input).toHaveAccessibleDescription("Enter a name");
    const describedBy = input.getAttribute("aria-describedby");
    expect(describedBy).toBeTruthy();
    expect(document.getElementById(describedBy!)).toHaveTextContent("Enter a name");
    // The hint gives way to the error.
    expect(screen.queryByText("Shown in the key list")).not.toBeInTheDocument();
  });

  it("has no description without hint or error", () => {
    render(<Controlled />);
    expect(screen.getByRole("textbox", { name: "Name" })).not.toHaveAttribute("aria-describedby");
  });
});

describe("SelectField", () => {
  it("labels its select and announces its error", async () => {
    const onChange = jest.fn();
    render(
      <SelectField
        id="role"
        label="Role"
        value="viewer"
        onChange={onChange}
        error="Pick a role"
        options={[
          { value: "viewer", label: "Viewer" },
          { value: "admin", label: "Admin" },
        ]}
      />,
    );
    const select = screen.getByRole("combobox", { name: "Role" });
    expect(select).toBeInvalid();
    expect(select).toHaveAccessibleDescription("Pick a role");
    await userEvent.selectOptions(select, "Admin");
    expect(onChange).toHaveBeenCalledWith("admin");
  });
});
