// Parses each Mermaid file named on the command line with the real mermaid
// package (under a jsdom DOM shim, which mermaid needs even to parse).
// Prints one JSON line per file: {"file", "ok", "type"|"error"}; exits 1 if
// any file fails to parse.
import { readFileSync } from 'node:fs';
import { JSDOM } from 'jsdom';

const dom = new JSDOM('<!doctype html><html><body></body></html>');
globalThis.window = dom.window;
globalThis.document = dom.window.document;
const { default: mermaid } = await import('mermaid');
mermaid.initialize({ startOnLoad: false });

let failed = false;
for (const file of process.argv.slice(2)) {
  try {
    const r = await mermaid.parse(readFileSync(file, 'utf8'));
    console.log(JSON.stringify({ file, ok: true, type: r.diagramType }));
  } catch (e) {
    failed = true;
    console.log(JSON.stringify({ file, ok: false, error: String((e && e.message) || e) }));
  }
}
process.exit(failed ? 1 : 0);
