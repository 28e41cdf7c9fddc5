// The task's X.509-SVID, from the SPIFFE Workload API (the SPIRE agent's
// socket) over @grpc/grpc-js with the Workload API proto, or from files.
import { X509Certificate, createPrivateKey, type KeyObject } from "node:crypto";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";

export interface SVID {
  spiffeId: string;
  chain: X509Certificate[]; // leaf first
  key: KeyObject;
  bundle: X509Certificate[]; // the trust domain's CA certificates
}

const PROTO = fileURLToPath(new URL("../proto/workload.proto", import.meta.url));

// splitDER splits concatenated DER certificates (the Workload API's
// x509_svid and bundle fields).
export function splitDER(buf: Buffer): Buffer[] {
  const out: Buffer[] = [];
  let off = 0;
  while (off < buf.length) {
    if (buf[off] !== 0x30) throw new Error(`not a DER SEQUENCE at byte ${off}`);
    let len = buf[off + 1];
    let hdr = 2;
    if (len & 0x80) {
      const n = len & 0x7f;
      if (n < 1 || n > 4) throw new Error(`bad DER length at byte ${off}`);
      len = 0;
      for (let i = 0; i < n; i++) len = len * 256 + buf[off + 2 + i];
      hdr = 2 + n;
    }
    const end = off + hdr + len;
    if (end > buf.length) throw new Error("truncated DER");
    out.push(buf.subarray(off, end));
    off = end;
  }
  return out;
}

function spiffeIdOf(cert: X509Certificate): string {
  const uris = (cert.subjectAltName ?? "")
    .split(", ")
    .filter((s) => s.startsWith("URI:spiffe://"))
    .map((s) => s.slice(4));
  if (uris.length !== 1) throw new Error("the certificate does not have exactly one SPIFFE ID");
  return uris[0];
}
export { spiffeIdOf };

// fetchX509SVID asks the Workload API at socket (a path or unix:///path)
// for the process's X.509-SVIDs and returns the first (the default SVID).
export async function fetchX509SVID(socket: string, timeoutMs = 10000): Promise<SVID> {
  const def = protoLoader.loadSync(PROTO, { keepCase: true, longs: String, defaults: true });
  const pkg = grpc.loadPackageDefinition(def) as any;
  const target = socket.includes("://") ? socket : "unix://" + socket;
  const client = new pkg.SpiffeWorkloadAPI(target, grpc.credentials.createInsecure());
  const md = new grpc.Metadata();
  md.set("workload.spiffe.io", "true"); // required by the Workload API
  try {
    return await new Promise<SVID>((resolve, reject) => {
      const call = client.FetchX509SVID({}, md, { deadline: Date.now() + timeoutMs });
      call.on("data", (resp: any) => {
        const s = resp.svids?.[0];
        if (!s) return reject(new Error("the Workload API returned no SVID"));
        const chain = splitDER(Buffer.from(s.x509_svid)).map((d) => new X509Certificate(d));
        const key = createPrivateKey({ key: Buffer.from(s.x509_svid_key), format: "der", type: "pkcs8" });
        const bundle = splitDER(Buffer.from(s.bundle)).map((d) => new X509Certificate(d));
        resolve({ spiffeId: s.spiffe_id, chain, key, bundle });
        call.cancel();
      });
      call.on("error", (err: Error & { code?: number }) => {
        if (err.code !== grpc.status.CANCELLED) reject(err);
      });
    });
  } finally {
    client.close();
  }
}

// pemCerts parses every certificate of a PEM file.
export function pemCerts(pem: string): X509Certificate[] {
  const blocks = pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
  return blocks.map((b) => new X509Certificate(b));
}

// loadSVIDFiles reads an SVID from PEM files (spire-agent api fetch x509 -write).
export function loadSVIDFiles(certFile: string, keyFile: string, bundleFile: string): SVID {
  const chain = pemCerts(readFileSync(certFile, "utf8"));
  if (chain.length === 0) throw new Error(`${certFile}: no certificate`);
  return {
    spiffeId: spiffeIdOf(chain[0]),
    chain,
    key: createPrivateKey(readFileSync(keyFile)),
    bundle: pemCerts(readFileSync(bundleFile, "utf8")),
  };
}

export function toPEM(certs: X509Certificate[]): string {
  return certs.map((c) => c.toString()).join("");
}
