// Component styles follow WeChat's rule: class selectors only (no tag, id or attribute
// selectors, which component WXSS may not use); states are shown by class modifiers
// (`card--ready`), never by attribute selectors, in pages too.

const fs = require("fs");
const path = require("path");

const ROOT = path.resolve(__dirname, "../..");

function wxssFiles(dir) {
  return fs
    .readdirSync(path.join(ROOT, dir), { recursive: true })
    .filter((name) => name.endsWith(".wxss"))
    .map((name) => path.join(dir, name));
}

/** Every selector of a stylesheet (inside @media too), comments removed. */
function selectors(text) {
  const bare = text.replace(/\/\*[\s\S]*?\*\//g, "");
  const out = [];
  const rule = /([^{}]+)\{/g;
  let match;
  while ((match = rule.exec(bare))) {
    const head = match[1].trim();
    if (head.startsWith("@")) continue;
    for (const part of head.split(",")) out.push(part.trim());
  }
  return out;
}

const CLASS = "\\.[A-Za-z_][\\w-]*";
const PSEUDO = "(::?[a-z-]+(\\([^)]*\\))?)*";
const CLASS_ONLY = new RegExp(`^${CLASS}${PSEUDO}(\\s*[>+~]?\\s*${CLASS}${PSEUDO})*$`);

test("the selector check tells classes from tags, ids and attributes", () => {
  expect(selectors(".a, .b .c::after {x:1} @media (x) { .d--e {y:2} }")).toEqual([
    ".a",
    ".b .c::after",
    ".d--e",
  ]);
  for (const ok of [".a", ".a .b", ".a > .b", ".a--b:first-child", ".a::after"])
    expect(ok).toMatch(CLASS_ONLY);
  for (const bad of ["view", ".a button", "#id", ".a[data-state='x']", "page .a"])
    expect(bad).not.toMatch(CLASS_ONLY);
});

test.each(wxssFiles("components"))("%s uses class selectors only", (file) => {
  const found = selectors(fs.readFileSync(path.join(ROOT, file), "utf8"));
  expect(found.length).toBeGreaterThan(0);
  expect(found.filter((s) => !CLASS_ONLY.test(s))).toEqual([]);
});

test.each([...wxssFiles("pages"), "app.wxss"])("%s shows states by class, not attribute", (file) => {
  const found = selectors(fs.readFileSync(path.join(ROOT, file), "utf8"));
  expect(found.filter((s) => /\[/.test(s))).toEqual([]);
});
