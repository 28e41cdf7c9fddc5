// verify-server: an HTTP service that checks each request's agentid
// signature with the http-message-sig library (the Go → Node direction of
// the interop test). It prints "listening <port>", then answers 200
// "verified <spiffe-id> <method> <target-uri>" or 401 "<reason>".
//
//   node dist/verify-server.js --bundle bundle.pem
import { createServer } from "node:http";
import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { pemCerts } from "./svid.js";
import { verifyRequest } from "./httpsig.js";
import { isSignatureError } from "http-message-sig";

// reason renders a refusal: the library's error code and message, and the
// cause a resolver gave.
function reason(err: unknown): string {
  if (isSignatureError(err)) {
    const cause = err.cause instanceof Error ? ": " + err.cause.message : "";
    return `${err.code}: ${err.message}${cause}`;
  }
  return err instanceof Error ? err.message : String(err);
}

const { values } = parseArgs({ options: { bundle: { type: "string" }, port: { type: "string", default: "0" } } });
const bundle = pemCerts(readFileSync(values.bundle!, "utf8"));

const server = createServer((req, res) => {
  const chunks: Buffer[] = [];
  req.on("data", (c) => chunks.push(c));
  req.on("end", async () => {
    const headers: Record<string, string> = {};
    for (const [k, v] of Object.entries(req.headers)) {
      if (v !== undefined) headers[k] = Array.isArray(v) ? v.join(", ") : v;
    }
    const targetUri = `http://${req.headers.host}${req.url}`;
    try {
      const v = await verifyRequest({ method: req.method!, targetUri, headers, body: Buffer.concat(chunks) }, bundle);
      res.writeHead(200).end(`verified ${v.spiffeId} ${req.method} ${targetUri}\n`);
    } catch (err) {
      res.writeHead(401).end(`${reason(err)}\n`);
    }
  });
});
server.listen(Number(values.port), "127.0.0.1", () => {
  const addr = server.address();
  console.log(`listening ${typeof addr === "object" && addr ? addr.port : 0}`);
});
