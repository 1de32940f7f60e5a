import { render, screen } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { useState } from "react";

import { Dialog } from "./Dialog";

describe("Dialog", () => {
  it("is a modal dialog named by its title", () => {
    render(
      <Dialog title="Create key" onClose={() => {}}>
        <p>Body</p>
      </Dialog>,
    );
    const dialog = screen.getByRole("dialog", { name: "Create key" });
    expect(dialog).toHaveAttribute("aria-modal", "true");
    expect(dialog).toHaveTextContent("Body");
  });

  it("moves focus to its first field", () => {
    render(
      <Dialog title="Create key" onClose={() => {}}>
        <label htmlFor="key-name">Key name</label>
        <input id="key-name" />
        <button type="submit">Create</button>
      </Dialog>,
    );
    expect(screen.getByRole("textbox", { name: "Key name" })).toHaveFocus();
  });

  it("focuses itself when it has nothing but the close button", () => {
    render(
      <Dialog title="Details" onClose={() => {}}>
        <p>Read only</p>
      </Dialog>,
    );
    expect(screen.getByRole("dialog", { name: "Details" })).toHaveFocus();
  });

  it("calls onClose on Escape", async () => {
    const onClose = jest.fn();
    render(
      <Dialog title="Create key" onClose={onClose}>
        <label htmlFor="key-name">Key name</label>
        <input id="key-name" />
      </Dialog>,
    );
    await userEvent.keyboard("{Escape}");
    expect(onClose).toHaveBeenCalledTimes(1);
  });

  it("calls onClose from its close button", async () => {
    const onClose = jest.fn();
    render(
      <Dialog title="Create key" onClose={onClose}>
        <p>Body</p>
      </Dialog>,
    );
    await userEvent.click(screen.getByRole("button", { name: "Close" }));
    expect(onClose).toHaveBeenCalledTimes(1);
  });

  it("keeps Tab inside and gives focus back when it closes", async () => {
    function Page() {
      const [open, setOpen] = useState(false);
      return (
        <>
          <button onClick={() => setOpen(true)}>Open</button>
          {open && (
            <Dialog title="Create key" onClose={() => setOpen(false)}>
              <label htmlFor="key-name">Key name</label>
              <input id="key-name" />
              <button type="button">Create</button>
            </Dialog>
          )}
        </>
      );
    }
    const user = userEvent.setup();
    render(<Page />);
    const opener = screen.getByRole("button", { name: "Open" });
    await user.click(opener);
    const input = screen.getByRole("textbox", { name: "Key name" });
    expect(input).toHaveFocus();
    await user.tab();
    expect(screen.getByRole("button", { name: "Create" })).toHaveFocus();
    await user.tab();
    expect(screen.getByRole("button", { name: "Close" })).toHaveFocus();
    await user.keyboard("{Escape}");
    expect(screen.queryByRole("dialog")).not.toBeInTheDocument();
    expect(opener).toHaveFocus();
  });
});
