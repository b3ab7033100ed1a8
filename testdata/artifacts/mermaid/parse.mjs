// Parses each Mermaid file named on the command line with the real mermaid
// package (under a jsdom DOM shim, which mermaid needs even to parse).
// Gantt charts are also laid out: every task's start and end are computed
// as mermaid computes them to draw (an invalid date fails), the end is not
// before the start, and the chart is rendered to SVG with one bar per task.
// Prints one JSON line per file: {"file", "ok", "type", "tasks"|"error"};
// exits 1 if any file fails.
import { readFileSync } from 'node:fs';
import { JSDOM } from 'jsdom';

const dom = new JSDOM('<!doctype html><html><body></body></html>', { pretendToBeVisual: true });
globalThis.window = dom.window;
globalThis.document = dom.window.document;
globalThis.CSSStyleSheet ??= dom.window.CSSStyleSheet;
// jsdom does no layout: text measures 7px a character.
dom.window.SVGElement.prototype.getBBox = function () {
  return { x: 0, y: 0, width: 7 * (this.textContent || '').length, height: 14 };
};
dom.window.SVGElement.prototype.getComputedTextLength = function () {
  return 7 * (this.textContent || '').length;
};
const { default: mermaid } = await import('mermaid');
mermaid.initialize({ startOnLoad: false });

async function gantt(text, n) {
  const d = await mermaid.mermaidAPI.getDiagramFromText(text);
  const tasks = d.db.getTasks();
  for (const t of tasks) {
    if (!(t.startTime instanceof Date) || isNaN(t.startTime) || !(t.endTime instanceof Date) || isNaN(t.endTime)) {
      throw new Error(`task ${t.id} "${t.task}": no valid start and end`);
    }
    if (t.endTime < t.startTime) {
      throw new Error(`task ${t.id} "${t.task}": ends before it starts`);
    }
  }
  const { svg } = await mermaid.render(`chart${n}`, text);
  const bars = (svg.match(/<rect id="chart\d+-[^"]*"[^>]*class="task[ "]/g) || []).length;
  if (bars !== tasks.length) {
    throw new Error(`rendered ${bars} bars for ${tasks.length} tasks`);
  }
  return tasks.length;
}

let failed = false;
let n = 0;
for (const file of process.argv.slice(2)) {
  try {
    const text = readFileSync(file, 'utf8');
    const r = await mermaid.parse(text);
    const out = { file, ok: true, type: r.diagramType };
    if (r.diagramType === 'gantt') {
      out.tasks = await gantt(text, n++);
    }
    console.log(JSON.stringify(out));
  } catch (e) {
    failed = true;
    console.log(JSON.stringify({ file, ok: false, error: String((e && e.message) || e) }));
  }
}
process.exit(failed ? 1 : 0);
