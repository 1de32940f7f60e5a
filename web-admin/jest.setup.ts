// Adds the DOM matchers (toBeInTheDocument, toHaveAccessibleDescription, …) to expect.
import "@testing-library/jest-dom";
