// The mini-program's copy of the page's assembly module. The page's ES modules
// (src/beatsync/web/assemble/) are the one source; this script writes them as CommonJS to
// utils/assemble/ (imports and exports rewritten, nothing else) and copies mp4box.js's CommonJS
// build from node_modules to utils/vendor/mp4box/. `--check` writes nothing and fails when a
// copy differs from what it would write: the Jest suite and `make test` run it.
//   node scripts/assemble-sync.js [--check]

const fs = require("fs");
const path = require("path");

const ROOT = path.resolve(__dirname, "..");
const SOURCE = path.resolve(ROOT, "../src/beatsync/web/assemble");
const TARGET = path.join(ROOT, "utils/assemble");
const MP4BOX_DIST = path.join(ROOT, "node_modules/mp4box/dist");
const VENDOR = path.join(ROOT, "utils/vendor/mp4box");
// The page imports mp4box's ES build; the mini-program requires its CommonJS build, renamed to
// .js (the mini-program's packer ships .js files only).
const MP4BOX_ESM = "../vendor/mp4box/mp4box.all.mjs";
const MP4BOX_CJS = "../vendor/mp4box/mp4box.all.js";
const MP4BOX_FILES = { "mp4box.all.cjs": "mp4box.all.js", "styp-CouZUj9h.cjs": "styp-CouZUj9h.js" };

function header(name) {
  return (
    `// Generated from src/beatsync/web/assemble/${name} by scripts/assemble-sync.js:\n` +
    "// edit that file, then run `npm run assemble-sync`.\n"
  );
}

/** CommonJS text of one of the page's ES modules. */
function toCommonJs(name, text) {
  const exported = [];
  let out = text.replace(
    /^import \{([^}]*)\} from "([^"]+)";$/gm,
    (_, names, from) => `const {${names}} = require("${from === MP4BOX_ESM ? MP4BOX_CJS : from}");`,
  );
  out = out.replace(/^export \{([^}]*)\} from "([^"]+)";$/gm, (_, names, from) => {
    exported.push(
      ...names
        .split(",")
        .map((n) => n.trim())
        .filter(Boolean),
    );
    return `const {${names}} = require("${from}");`;
  });
  out = out.replace(/^export \{([^}]*)\};\n/gm, (_, names) => {
    exported.push(
      ...names
        .split(",")
        .map((n) => n.trim())
        .filter(Boolean),
    );
    return "";
  });
  out = out.replace(/^export ((?:async )?function|class|const|let) (\w+)/gm, (_, kind, n) => {
    exported.push(n);
    return `${kind} ${n}`;
  });
  if (/^\s*(import|export)\b/m.test(out)) {
    throw new Error(`${name}: an import or export this script does not rewrite`);
  }
  return `${header(name)}\n${out}\nmodule.exports = { ${exported.join(", ")} };\n`;
}

function mp4boxCopy(name, text) {
  return name === "mp4box.all.cjs"
    ? text.replace("./styp-CouZUj9h.cjs", "./styp-CouZUj9h.js")
    : text;
}

/** Every file the mini-program should hold: {absolute path: text}. */
function expected() {
  const files = {};
  for (const name of fs
    .readdirSync(SOURCE)
    .filter((n) => n.endsWith(".js"))
    .sort()) {
    files[path.join(TARGET, name)] = toCommonJs(
      name,
      fs.readFileSync(path.join(SOURCE, name), "utf8"),
    );
  }
  for (const [from, to] of Object.entries(MP4BOX_FILES)) {
    files[path.join(VENDOR, to)] = mp4boxCopy(
      from,
      fs.readFileSync(path.join(MP4BOX_DIST, from), "utf8"),
    );
  }
  files[path.join(VENDOR, "LICENSE")] = fs.readFileSync(
    path.join(MP4BOX_DIST, "../LICENSE"),
    "utf8",
  );
  return files;
}

/** The copies that differ from the sources (paths relative to the mini-program). */
function drift() {
  const files = expected();
  const stale = Object.entries(files)
    .filter(([p, text]) => !fs.existsSync(p) || fs.readFileSync(p, "utf8") !== text)
    .map(([p]) => path.relative(ROOT, p));
  const extra = fs.existsSync(TARGET)
    ? fs
        .readdirSync(TARGET)
        .map((n) => path.join(TARGET, n))
        .filter((p) => !(p in files))
    : [];
  return [...stale, ...extra.map((p) => path.relative(ROOT, p))];
}

function main() {
  if (process.argv.includes("--check")) {
    const stale = drift();
    if (stale.length) {
      console.error(`out of date (run npm run assemble-sync): ${stale.join(", ")}`);
      process.exit(1);
    }
    console.log("the mini-program's assembly module matches the page's");
    return;
  }
  fs.rmSync(TARGET, { recursive: true, force: true });
  for (const [p, text] of Object.entries(expected())) {
    fs.mkdirSync(path.dirname(p), { recursive: true });
    fs.writeFileSync(p, text);
  }
}

module.exports = { drift, toCommonJs };

if (require.main === module) main();
