// agentid's RFC 9421 profile (docs/signatures.md) on top of the
// http-message-sig library: the same wire format as the Go package
// svid/httpsig, so either side verifies the other's signatures.
import { X509Certificate, createHash, randomBytes, sign as cryptoSign, verify as cryptoVerify, type KeyObject } from "node:crypto";
import {
  createSignature,
  verifySignature,
  type RequestDescriptor,
  type Signer,
  type Verifier,
} from "http-message-sig";
import { spiffeIdOf, type SVID } from "./svid.js";

export const LABEL = "agentid";
export const TAG = "agentid";
export const SVID_HEADER = "agentid-svid";
export const COMPONENTS = ["@method", "@target-uri", "content-digest", SVID_HEADER];
export const LIFETIME_S = 30;
export const WINDOW_S = 60;

// contentDigest is RFC 9530's sha-256 Content-Digest of body.
export function contentDigest(body: Uint8Array): string {
  return "sha-256=:" + createHash("sha256").update(body).digest("base64") + ":";
}

// encodeChain is the Agentid-Svid value: an RFC 8941 list of byte sequences.
export function encodeChain(chain: X509Certificate[]): string {
  return chain.map((c) => ":" + c.raw.toString("base64") + ":").join(", ");
}

function decodeChain(value: string): X509Certificate[] {
  const items = value.split(",").map((s) => s.trim());
  if (items.length === 0 || items.some((s) => !/^:[A-Za-z0-9+/=]*:$/.test(s))) {
    throw new Error("agentid-svid is not a list of byte sequences");
  }
  return items.map((s) => new X509Certificate(Buffer.from(s.slice(1, -1), "base64")));
}

export function keyId(leaf: X509Certificate): string {
  return createHash("sha256").update(leaf.raw).digest("base64url");
}

// algorithmOf is the RFC 9421 algorithm of a key (as the Go package's AlgorithmOf).
export function algorithmOf(key: KeyObject): string {
  const d = key.asymmetricKeyDetails;
  switch (key.asymmetricKeyType) {
    case "ec":
      if (d?.namedCurve === "prime256v1") return "ecdsa-p256-sha256";
      if (d?.namedCurve === "secp384r1") return "ecdsa-p384-sha384";
      break;
    case "ed25519":
      return "ed25519";
    case "rsa":
      return "rsa-pss-sha512";
  }
  throw new Error(`no RFC 9421 algorithm for a ${key.asymmetricKeyType} key`);
}

function cryptoParams(alg: string, key: KeyObject): [string | null, any] {
  switch (alg) {
    case "ecdsa-p256-sha256":
      return ["sha256", { key, dsaEncoding: "ieee-p1363" }];
    case "ecdsa-p384-sha384":
      return ["sha384", { key, dsaEncoding: "ieee-p1363" }];
    case "ed25519":
      return [null, key];
    case "rsa-pss-sha512":
      return ["sha512", { key, padding: 6 /* RSA_PKCS1_PSS_PADDING */, saltLength: 64 }];
  }
  throw new Error(`unsupported algorithm ${alg}`);
}

export function keySigner(key: KeyObject): Signer {
  const algorithm = algorithmOf(key);
  const [hash, k] = cryptoParams(algorithm, key);
  return { algorithm, sign: (data: Uint8Array) => new Uint8Array(cryptoSign(hash, data, k)) };
}

function keyVerifier(key: KeyObject): Verifier {
  const algorithm = algorithmOf(key);
  const [hash, k] = cryptoParams(algorithm, key);
  return { algorithm, verify: (data: Uint8Array, sig: Uint8Array) => cryptoVerify(hash, data, k, sig) };
}

// requiredComponents are the profile's components for a message with
// these headers: content-type and authorization too when present (as
// draft-ietf-wimse-http-signature requires).
export function requiredComponents(headers: Record<string, string>): string[] {
  const c = [...COMPONENTS];
  if (headers["content-type"]) c.push("content-type");
  if (headers["authorization"]) c.push("authorization");
  return c;
}

export interface Outgoing {
  method: string;
  targetUri: string; // scheme://host[:port]/path?query exactly as sent
  headers: Record<string, string>; // lower-case names
  body: Uint8Array;
}

// signRequest adds Content-Digest, Agentid-Svid, Signature-Input and
// Signature to req.headers, signed with the SVID's key.
export async function signRequest(req: Outgoing, svid: SVID, now = Date.now()): Promise<Record<string, string>> {
  const headers: Record<string, string> = { ...req.headers };
  headers["content-digest"] = contentDigest(req.body);
  headers[SVID_HEADER] = encodeChain(svid.chain);
  const components = requiredComponents(headers);
  const signer = keySigner(svid.key);
  const created = Math.floor(now / 1000);
  const descriptor: RequestDescriptor = {
    kind: "request",
    method: req.method,
    targetUri: req.targetUri,
    fields: Object.entries(headers).map(([name, value]) => ({ name, value })),
  };
  const fields = await createSignature(descriptor, {
    label: LABEL,
    components,
    parameters: {
      created,
      expires: created + LIFETIME_S,
      nonce: randomBytes(16).toString("base64url"),
      keyid: keyId(svid.chain[0]),
      alg: signer.algorithm,
      tag: TAG,
    },
    signer,
  });
  headers["signature-input"] = fields.signatureInput;
  headers["signature"] = fields.signature;
  return headers;
}

export interface Verified {
  spiffeId: string;
  keyid?: string;
  created?: number;
  nonce?: string;
}

// chainsTo checks chain (leaf first) against the bundle's CA certificates
// at now: each certificate issued and signed by the next, the last by a
// bundle certificate, all valid now.
function chainsTo(chain: X509Certificate[], bundle: X509Certificate[], now: Date): boolean {
  const valid = (c: X509Certificate) => new Date(c.validFrom) <= now && now <= new Date(c.validTo);
  for (let i = 0; i < chain.length; i++) {
    if (!valid(chain[i])) return false;
    const issuers = i + 1 < chain.length ? [chain[i + 1]] : bundle;
    if (!issuers.some((ca) => valid(ca) && chain[i].checkIssued(ca) && chain[i].verify(ca.publicKey))) return false;
  }
  return true;
}

// verifyRequest checks an incoming request's agentid signature: the
// library verifies the RFC 9421 signature under our policy (components,
// parameters, algorithm, age); the key is the Agentid-Svid leaf's, which
// must chain to the bundle; the tag is agentid; the Content-Digest is the
// body's. Throws with a reason otherwise.
export async function verifyRequest(req: Outgoing, bundle: X509Certificate[], now = Date.now()): Promise<Verified> {
  const descriptor: RequestDescriptor = {
    kind: "request",
    method: req.method,
    targetUri: req.targetUri,
    fields: Object.entries(req.headers).map(([name, value]) => ({ name, value })),
  };
  let spiffeId = "";
  const verified = await verifySignature(descriptor, {
    label: LABEL,
    policy: {
      algorithms: ["ecdsa-p256-sha256", "ecdsa-p384-sha384", "ed25519", "rsa-pss-sha512"],
      requiredComponents: requiredComponents(req.headers),
      requiredParameters: ["created", "expires", "nonce", "keyid", "tag"],
      maxAge: WINDOW_S,
      clockSkew: WINDOW_S,
      now: Math.floor(now / 1000),
    },
    resolveVerifier(candidate) {
      const value = req.headers[SVID_HEADER];
      if (!value) throw new Error("no agentid-svid header");
      const chain = decodeChain(value);
      if (!chainsTo(chain, bundle, new Date(now))) throw new Error("the agentid-svid certificate does not chain to the bundle");
      if (candidate.parameters.keyid !== keyId(chain[0])) throw new Error("keyid does not name the agentid-svid certificate");
      spiffeId = spiffeIdOf(chain[0]);
      return keyVerifier(chain[0].publicKey);
    },
  });
  const p = verified.parameters;
  if (p.tag !== TAG) throw new Error(`tag ${String(p.tag)} is not ${TAG}`);
  if (typeof p.expires !== "number" || p.expires * 1000 <= now) throw new Error("the signature has expired");
  if (req.headers["content-digest"] !== contentDigest(req.body)) throw new Error("content-digest does not match the body");
  return { spiffeId, keyid: p.keyid, created: p.created, nonce: p.nonce };
}
