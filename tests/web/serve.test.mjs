// The static server (scripts/serve.mjs) keeps to its root. Requests go out raw
// (node:http with the path as written), because fetch() and the URL parser
// normalise `/../` away before a server could see it; the encoded forms
// (`%2e%2e/`, `..%2f`) reach the server and must be refused there. Needs
// neither the wasm nor the package.
import { test } from "node:test";
import assert from "node:assert/strict";
import { request } from "node:http";
import { mkdtempSync, mkdirSync, writeFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startServer } from "../../scripts/serve.mjs";

const SECRET = "webpeft-serve-test-secret";

/** GET `path` exactly as given; resolves { status, body }. */
function rawGet(port, path) {
  return new Promise((ok, fail) => {
    const req = request({ host: "127.0.0.1", port, path, method: "GET" }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (c) => (body += c));
      res.on("end", () => ok({ status: res.statusCode, body }));
    });
    req.on("error", fail);
    req.end();
  });
}

test("static server: no path outside its root, raw or percent-encoded, and no dot-folders", async () => {
  // <tmp>/secret.txt sits next to the served root <tmp>/root/.
  const dir = mkdtempSync(join(tmpdir(), "webpeft-serve-"));
  const root = join(dir, "root");
  mkdirSync(join(root, "sub"), { recursive: true });
  mkdirSync(join(root, ".git"));
  writeFileSync(join(root, "sub/ok.txt"), "served");
  writeFileSync(join(root, ".git/config"), SECRET);
  writeFileSync(join(dir, "secret.txt"), SECRET);
  const server = await startServer({ root });
  try {
    // The server does serve files under its root, so a refusal below means something.
    const ok = await rawGet(server.port, "/sub/ok.txt");
    assert.equal(ok.status, 200);
    assert.equal(ok.body, "served");

    const escapes = [
      "/../secret.txt",
      "/sub/../../secret.txt",
      "/../../../../../../../../etc/passwd",
      "/%2e%2e/secret.txt",
      "/%2E%2E/secret.txt",
      "/.%2e/secret.txt",
      "/%2e%2e%2fsecret.txt",
      "/..%2fsecret.txt",
      "/sub/..%2f..%2fsecret.txt",
      "/sub%2f..%2f..%2fsecret.txt",
      "/..%2f..%2f..%2f..%2f..%2f..%2f..%2f..%2fetc%2fpasswd",
      "/..\\secret.txt",
      "/..%5csecret.txt",
      "/%252e%252e/secret.txt",
      "/%2e%2e%252fsecret.txt",
      "//../secret.txt",
      "http://127.0.0.1/../secret.txt",
      "/.git/config",
      "/%2egit/config",
      "/sub/..%2f.git%2fconfig",
    ];
    for (const path of escapes) {
      const r = await rawGet(server.port, path);
      assert.ok(!r.body.includes(SECRET) && !r.body.includes("root:x:0:0"), `${path}: served a file it must not (status ${r.status})`);
      assert.ok([400, 403, 404].includes(r.status), `${path}: status ${r.status}`);
    }
    // Where the decoded path climbs out of the root, the server itself must
    // say no (403), not merely fail to find the file.
    for (const path of ["/..%2fsecret.txt", "/sub/..%2f..%2fsecret.txt", "/%2e%2e%2fsecret.txt", "/%2egit/config"]) {
      assert.equal((await rawGet(server.port, path)).status, 403, path);
    }
  } finally {
    await server.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
