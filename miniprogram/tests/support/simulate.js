// Loading the mini-program's components and pages into miniprogram-simulate: the pure-JS
// template compiler, paths from the mini-program's root (absolute usingComponents resolve
// there), and one load per file per test run, since Jest caches a page's module after its
// first require and Component() would not run again.

const path = require("path");
const simulate = require("miniprogram-simulate");
const { userTap } = require("./fake-wx.js");

const ROOT = path.resolve(__dirname, "../..");

// miniprogram-simulate's built-in <video> and <image> take no properties; these keep what the
// page binds to them (src, poster), so a test can read it as the component's data.
simulate.load({
  id: "video",
  tagName: "wx-video",
  template: "<slot/>",
  properties: { src: String, poster: String },
});
simulate.load({
  id: "image",
  tagName: "wx-image",
  template: "<slot/>",
  properties: { src: String, mode: String },
});

function load(relative) {
  return simulate.load(path.join(ROOT, relative), { compiler: "simulate", rootPath: ROOT });
}

/** Render a loaded component or page and attach it, so its lifetimes run. */
function mount(id, properties) {
  const component = simulate.render(id, properties);
  component.attach(document.createElement("parent-wrapper"));
  return component;
}

/** The text of the first node matching `selector`, trimmed ("" when there is none). */
function text(component, selector) {
  const node = component.querySelector(selector);
  return node ? node.dom.textContent.trim() : "";
}

/**
 * Tap the first node matching `selector` (j-component dispatches on the next microtask). What
 * the handler calls before its first wait counts as called from the tap, as WeChat judges it.
 */
async function tap(component, selector) {
  const node = component.querySelector(selector);
  if (!node) throw new Error(`nothing matches ${selector}`);
  userTap();
  node.dispatchEvent("tap");
  await simulate.sleep(0);
}

module.exports = { ROOT, load, mount, simulate, tap, text };
