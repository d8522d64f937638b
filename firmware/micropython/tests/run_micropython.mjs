// Run the port's scenario tests on real MicroPython (the WebAssembly port) under Node.
// Usage: node run_micropython.mjs <repo root>
// Copies firmware/micropython/{lib,host,tests} and shared/vectors into MicroPython's in-memory file system
// at the same paths, then runs tests/mp_runner.py. Exit code 0 only when the runner reports no failure.
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const port = dirname(here);
const repo = process.argv[2] || dirname(dirname(port));
const { loadMicroPython } = await import(
  join(port, "node_modules/@micropython/micropython-webassembly-pyscript/micropython.mjs"));

let failed = -1;
let sawSummary = false;
const mp = await loadMicroPython({
  heapsize: 32 * 1024 * 1024,
  stdout: (line) => {
    console.log(line);
    const m = /^SUMMARY passed=(\d+) failed=(\d+)/.exec(line);
    if (m) { sawSummary = true; failed = Number(m[2]); }
  },
  stderr: (line) => console.error(line),
});

const ROOT = "/repo";
function mkdirs(path) {
  let cur = "";
  for (const part of path.split("/").filter(Boolean)) {
    cur += "/" + part;
    try { mp.FS.mkdir(cur); } catch (e) { /* exists */ }
  }
}
function copyTree(rel, filter) {
  const src = join(repo, rel);
  mkdirs(ROOT + "/" + rel);
  for (const name of readdirSync(src)) {
    if (name === "node_modules" || name === "__pycache__") continue;
    const full = join(src, name);
    if (statSync(full).isDirectory()) copyTree(rel + "/" + name, filter);
    else if (filter(name)) mp.FS.writeFile(ROOT + "/" + rel + "/" + name, readFileSync(full));
  }
}
const py = (n) => n.endsWith(".py");
copyTree("firmware/micropython/lib", py);
copyTree("firmware/micropython/host", py);
copyTree("firmware/micropython/tests", py);
copyTree("shared/vectors", (n) => n.endsWith(".json"));
for (const name of readdirSync(port)) {  // config.py, main.py, code.py at the port's root
  if (py(name)) mp.FS.writeFile(ROOT + "/firmware/micropython/" + name, readFileSync(join(port, name)));
}

try {
  mp.runPython(`
import sys
sys.path.insert(0, "${ROOT}/firmware/micropython/tests")
__file__ = "${ROOT}/firmware/micropython/tests/mp_runner.py"
exec(open(__file__).read())
`);
} catch (e) {
  console.error("MicroPython raised: " + e.message);
  process.exit(2);
}
process.exit(sawSummary && failed === 0 ? 0 : 1);
