// Promise forms of the callback-style wx API, and the small helpers every caller needs.
// `wx` is looked up at call time, never captured: tests put their own `wx` in place.

/** Call `wx[name](options)` and settle with its success or fail result. */
function call(name, options) {
  return new Promise((resolve, reject) => {
    const fn = typeof wx === "object" && wx ? wx[name] : undefined;
    if (typeof fn !== "function") {
      reject({ errMsg: `${name}:fail not supported` });
      return;
    }
    fn.call(wx, Object.assign({}, options, { success: resolve, fail: reject }));
  });
}

/** Whether this WeChat version has `wx[name]`. */
function has(name) {
  return typeof wx === "object" && wx !== null && typeof wx[name] === "function";
}

/** A response header by name, whatever case the network layer gave it. */
function headerValue(headers, name) {
  if (!headers) return null;
  const wanted = name.toLowerCase();
  for (const key of Object.keys(headers)) {
    if (key.toLowerCase() === wanted) return headers[key];
  }
  return null;
}

/** The user closed a picker or a dialog: not an error to show. */
function isCancel(error) {
  return Boolean(error && typeof error.errMsg === "string" && /cancel/i.test(error.errMsg));
}

/**
 * A wait that `wake()` ends early (the network came back, the app came to the foreground).
 * Resolves true when it was woken.
 */
function wakeableSleep(ms) {
  let timer = null;
  let done = null;
  const promise = new Promise((resolve) => {
    done = resolve;
    timer = setTimeout(() => resolve(false), ms);
  });
  return {
    promise,
    wake() {
      clearTimeout(timer);
      done(true);
    },
  };
}

module.exports = { call, has, headerValue, isCancel, wakeableSleep };
