import { render, screen, within } from "@testing-library/react";
import userEvent from "@testing-library/user-event";

import { Pagination, Table, Td, Th } from "./Table";

describe("Pagination", () => {
  it("says which rows are shown and disables Previous on page 1", async () => {
    const onPage = jest.fn();
    render(<Pagination page={1} perPage={25} total={60} onPage={onPage} label="Keys pages" />);
    const nav = screen.getByRole("navigation", { name: "Keys pages" });
    expect(within(nav).getByText("1–25 of 60")).toBeInTheDocument();
    expect(within(nav).getByText("Page 1 of 3")).toBeInTheDocument();
    expect(within(nav).getByRole("button", { name: "Previous" })).toBeDisabled();
    await userEvent.click(within(nav).getByRole("button", { name: "Next" }));
    expect(onPage).toHaveBeenCalledWith(2);
  });

  it("disables Next on the last page", async () => {
    const onPage = jest.fn();
    render(<Pagination page={3} perPage={25} total={60} onPage={onPage} />);
    expect(screen.getByText("51–60 of 60")).toBeInTheDocument();
    expect(screen.getByRole("button", { name: "Next" })).toBeDisabled();
    await userEvent.click(screen.getByRole("button", { name: "Previous" }));
    expect(onPage).toHaveBeenCalledWith(2);
  });

  it("says None when there is nothing", () => {
    render(<Pagination page={1} perPage={25} total={0} onPage={() => {}} />);
    expect(screen.getByText("None")).toBeInTheDocument();
    expect(screen.getByRole("button", { name: "Previous" })).toBeDisabled();
    expect(screen.getByRole("button", { name: "Next" })).toBeDisabled();
  });
});

describe("Table", () => {
  it("is a table named by its caption with column headers", () => {
    render(
      <Table
        caption="API keys"
        head={
          <>
            <Th>Name</Th>
            <Th right>Requests</Th>
          </>
        }
      >
        <tr>
          <Td>ci-bot</Td>
          <Td right>42</Td>
        </tr>
      </Table>,
    );
    const table = screen.getByRole("table", { name: "API keys" });
    expect(
      within(table)
        .getAllByRole("columnheader")
        .map((h) => h.textContent),
    ).toEqual(["Name", "Requests"]);
    expect(within(table).getByRole("cell", { name: "ci-bot" })).toBeInTheDocument();
  });
});
