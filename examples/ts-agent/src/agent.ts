// agent: calls a service over SPIFFE mTLS with the task's X.509-SVID and
// signs the request with the same key (RFC 9421, agentid's profile). It
// prints the HTTP status and body, like examples/kbagent.
//
//   agentid run --task-file planner.json -- node dist/agent.js \
//       --socket /run/spire/agent/public/api.sock --method POST --url https://proxy:8443/tickets --body '{"t":1}'
//
// --cert/--key/--bundle read the SVID from PEM files instead of the Workload API.
import { request } from "node:https";
import { parseArgs } from "node:util";
import { fetchX509SVID, loadSVIDFiles, spiffeIdOf, toPEM, type SVID } from "./svid.js";
import { signRequest } from "./httpsig.js";
import { X509Certificate } from "node:crypto";

const { values } = parseArgs({
  options: {
    url: { type: "string" },
    method: { type: "string", default: "GET" },
    body: { type: "string", default: "" },
    socket: { type: "string", default: process.env.SPIFFE_ENDPOINT_SOCKET ?? "" },
    cert: { type: "string" },
    key: { type: "string" },
    bundle: { type: "string" },
    "server-id": { type: "string" },
    "no-sign": { type: "boolean", default: false },
  },
});

async function main(): Promise<void> {
  if (!values.url) throw new Error("--url is required");
  const svid: SVID = values.cert
    ? loadSVIDFiles(values.cert, values.key ?? "", values.bundle ?? "")
    : await fetchX509SVID(values.socket!);
  const url = new URL(values.url);
  const body = Buffer.from(values.body!);
  const target = url.pathname + url.search;
  let headers: Record<string, string> = { host: url.host, "content-length": String(body.length) };
  if (!values["no-sign"]) {
    headers = await signRequest({ method: values.method!, targetUri: `${url.protocol}//${url.host}${target}`, headers, body }, svid);
  }
  const trustDomain = new URL(svid.spiffeId).host;
  const res = await new Promise<{ status: number; body: string }>((resolve, reject) => {
    const req = request(
      {
        host: url.hostname,
        port: url.port || 443,
        method: values.method,
        path: target,
        headers,
        cert: toPEM(svid.chain),
        key: svid.key.export({ format: "pem", type: "pkcs8" }) as string,
        ca: toPEM(svid.bundle),
        // SPIFFE: the server is authenticated by its SPIFFE ID, not a DNS name.
        checkServerIdentity: (_host, peer) => {
          const id = spiffeIdOf(new X509Certificate(peer.raw));
          const want = values["server-id"];
          if (want ? id !== want : new URL(id).host !== trustDomain) return new Error(`unexpected server ${id}`);
          return undefined;
        },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c) => chunks.push(c));
        res.on("end", () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString().trim() }));
      },
    );
    req.on("error", reject);
    req.end(body);
  });
  console.log(`${res.status} ${res.body}`);
}

main().catch((err) => {
  console.error("ts-agent:", err instanceof Error ? err.message : err);
  process.exit(1);
});
