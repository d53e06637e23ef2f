// Runs the page's LocalVideo (src/beatsync/web/audiofirst.js) in Node against a stubbed fetch,
// for test_page_prefetch.py: a track fetched ahead and taken by an assembly while another
// nudge's track is fetched ahead. Prints what was fetched and what is kept, as JSON.

import { fileURLToPath } from "node:url";

globalThis.navigator ??= { languages: ["en"], language: "en" };
globalThis.localStorage ??= { getItem: () => null, setItem() {}, removeItem() {} };

const here = fileURLToPath(new URL(".", import.meta.url));
const { LocalVideo } = await import(`${here}../../../src/beatsync/web/audiofirst.js`);

const fetched = [];
const aborted = [];
const pending = new Map();
const served = new Set(); // files answered at once from now on
function serve(file) {
  served.add(file);
  pending.get(file)?.();
}
globalThis.fetch = (url, { signal } = {}) => {
  fetched.push(url);
  return new Promise((resolve, reject) => {
    const file = url.split("?", 1)[0];
    const answer = () => resolve(new Response(new Uint8Array([1, 2, 3])));
    if (served.has(file)) return answer();
    signal?.addEventListener("abort", () => {
      aborted.push(file);
      reject(new DOMException("aborted", "AbortError"));
    });
    pending.set(file, answer);
  });
};

const A = "/api/v1/files/job_a/audio.m4a";
const B = "/api/v1/files/job_b/audio.m4a";
const local = new LocalVideo(new Blob([new Uint8Array(16)]), {}, null, null, []);
local.prefetch({ audio_url: `${A}?exp=1&sig=x` });
// "Apply": the answer signs the same file anew.
const assembled = local.assemble({ audio_url: `${A}?exp=2&sig=y` }).catch((error) => error);
await new Promise((resolve) => setTimeout(resolve, 0));
// Meanwhile the next nudge, left alone, is made and its track fetched ahead.
local.prefetch({ audio_url: `${B}?exp=1&sig=z` });
serve(A);
await assembled; // the stand-in class video cannot be assembled: only the fetches matter
const files = fetched.map((url) => url.split("?", 1)[0]);
console.log(JSON.stringify({ fetched: files, aborted, kept: local.ahead?.file ?? null }));
