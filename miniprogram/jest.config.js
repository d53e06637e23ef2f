// Component and page tests render in jsdom through miniprogram-simulate; the logic tests that
// need Node's own globals say so with a @jest-environment docblock.
module.exports = {
  testEnvironment: "jsdom",
  testMatch: ["<rootDir>/tests/**/*.test.js"],
  testTimeout: 20000,
  clearMocks: true,
};
