// An MCP client built with the official TypeScript SDK
// (@modelcontextprotocol/sdk) that talks to a server over Streamable HTTP
// with an agent task's JWT-SVID as its bearer token: what an agent written
// in TypeScript does in front of an agentid-protected MCP server (a go-sdk
// server using verifier/mcpauth, or any server behind the agentid-verifier
// MCP gateway).
//
//   node dist/client.js --url URL [--token-file FILE] COMMAND...
//
// COMMANDs run in order on one session, each printing one JSON line:
//
//   list                  {"op":"list","tools":["read_file",…]}
//   call NAME [ARGS]      {"op":"call","tool":NAME,"result":{…}}   (ARGS: a JSON object)
//                         {"op":"call","tool":NAME,"error":{"code":-32031,"message":"…","data":{…}}}
//   resources             {"op":"resources","resources":["file:///…",…]}
//   read URI              {"op":"read","uri":URI,"result":{…}} (or "error")
//   prompts               {"op":"prompts","prompts":["…",…]}
//   prompt NAME [ARGS]    {"op":"prompt","prompt":NAME,"result":{…}} (or "error"; ARGS: strings)
//   templates             {"op":"templates","templates":["demo://…/{id}",…]} (resources/templates/list)
//   complete REF TARGET ARG VALUE
//                         {"op":"complete","ref":TARGET,"result":{"completion":{…}}} (or "error"):
//                         completion/complete of argument ARG, typed so far VALUE, of the
//                         prompt (REF ref/prompt) or resource template (REF ref/resource) TARGET
//
// SPIFFE mTLS instead of (or with) the bearer token: --svid-dir DIR holds
// the task's X.509-SVID as `spire-agent api fetch x509 -write DIR` writes
// it (svid.0.pem, svid.0.key, bundle.0.pem); the server must present an
// X.509-SVID that chains to the bundle, with the SPIFFE ID --server-id
// (any ID of the bundle's trust domain without it).
//
// The first line is {"op":"connect","server":{…},"protocolVersion":"…"}
// or, when the session cannot be opened (401: no or a refused token),
// {"op":"connect","error":{…}} and exit status 1. A refused call is a
// result, not a failure: the exit status is 0 once every command ran.
// The token is the file's content (a JWT-SVID whose audience is the
// server's resource URI, e.g. written by `spire-agent api fetch jwt`), or
// $AGENTID_MCP_TOKEN; without either no Authorization header is sent.
import { X509Certificate } from "node:crypto";
import { readFileSync } from "node:fs";
import https from "node:https";
import { join } from "node:path";
import { Readable } from "node:stream";
import type { PeerCertificate } from "node:tls";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";

type Command =
  | { op: "list" | "resources" | "prompts" | "templates" }
  | { op: "complete"; ref: "ref/prompt" | "ref/resource"; target: string; arg: string; value: string }
  | { op: "call"; tool: string; args: Record<string, unknown> }
  | { op: "read"; uri: string }
  | { op: "prompt"; prompt: string; args: Record<string, string> };

interface Flags {
  url: URL;
  token?: string;
  svidDir?: string;
  serverID?: string;
  commands: Command[];
}

const usage =
  "usage: client.js --url URL [--token-file FILE] [--svid-dir DIR [--server-id SPIFFE-ID]] (list | call NAME [JSON-ARGS] | resources | read URI | prompts | prompt NAME [JSON-ARGS] | templates | complete ref/prompt|ref/resource TARGET ARG VALUE)...";

function parseArgs(argv: string[]): Flags {
  let url: URL | undefined;
  let token = process.env.AGENTID_MCP_TOKEN;
  let svidDir: string | undefined;
  let serverID: string | undefined;
  const commands: Command[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const value = (): string => {
      if (i + 1 >= argv.length) throw new Error(`${a} needs a value`);
      return argv[++i];
    };
    switch (a) {
      case "--url":
        url = new URL(value());
        break;
      case "--token-file":
        token = readFileSync(value(), "utf8").trim();
        break;
      case "--svid-dir":
        svidDir = value();
        break;
      case "--server-id":
        serverID = value();
        break;
      case "list":
      case "resources":
      case "prompts":
      case "templates":
        commands.push({ op: a });
        break;
      case "complete": {
        const ref = value();
        if (ref !== "ref/prompt" && ref !== "ref/resource") throw new Error(`complete: REF must be ref/prompt or ref/resource, not ${JSON.stringify(ref)}`);
        commands.push({ op: "complete", ref, target: value(), arg: value(), value: value() });
        break;
      }
      case "call": {
        const tool = value();
        const args = i + 1 < argv.length && argv[i + 1].startsWith("{") ? jsonObject(tool, argv[++i]) : {};
        commands.push({ op: "call", tool, args });
        break;
      }
      case "read":
        commands.push({ op: "read", uri: value() });
        break;
      case "prompt": {
        const prompt = value();
        const args = i + 1 < argv.length && argv[i + 1].startsWith("{") ? jsonObject(prompt, argv[++i]) : {};
        commands.push({ op: "prompt", prompt, args: args as Record<string, string> });
        break;
      }
      default:
        throw new Error(`unknown argument ${JSON.stringify(a)}`);
    }
  }
  if (!url) throw new Error("--url is required");
  if (serverID && !svidDir) throw new Error("--server-id needs --svid-dir");
  return { url, token, svidDir, serverID, commands };
}

function jsonObject(what: string, text: string): Record<string, unknown> {
  const parsed: unknown = JSON.parse(text);
  if (parsed === null || typeof parsed !== "object" || Array.isArray(parsed)) {
    throw new Error(`arguments of ${what} must be a JSON object`);
  }
  return parsed as Record<string, unknown>;
}

// spiffeFetch is a fetch over SPIFFE mTLS: the client presents the
// X.509-SVID in dir and accepts a server whose X.509-SVID chains to the
// bundle there and whose URI SAN is serverID (or of the bundle's trust
// domain), in place of a host name check.
function spiffeFetch(dir: string, serverID?: string) {
  const cert = readFileSync(join(dir, "svid.0.pem"));
  const key = readFileSync(join(dir, "svid.0.key"));
  const ca = readFileSync(join(dir, "bundle.0.pem"));
  const ours = spiffeIDs(new X509Certificate(cert).subjectAltName ?? "")[0] ?? "";
  const trustDomain = ours.split("/").slice(0, 3).join("/") + "/";
  const checkServerIdentity = (_host: string, peer: PeerCertificate): Error | undefined => {
    const ids = spiffeIDs(peer.subjectaltname ?? "");
    const ok = serverID ? ids.includes(serverID) : ids.some((id) => id.startsWith(trustDomain));
    return ok ? undefined : new Error(`server SPIFFE ID ${ids.join(", ") || "(none)"} is not ${serverID ?? "of " + trustDomain}`);
  };
  return (url: string | URL, init?: RequestInit): Promise<Response> =>
    new Promise((resolve, reject) => {
      const headers: Record<string, string> = {};
      new Headers(init?.headers).forEach((v, k) => (headers[k] = v));
      const req = https.request(
        new URL(url),
        { method: init?.method ?? "GET", headers, cert, key, ca, checkServerIdentity, signal: init?.signal ?? undefined },
        (res) => {
          const h = new Headers();
          for (const [k, v] of Object.entries(res.headers)) {
            for (const one of Array.isArray(v) ? v : v === undefined ? [] : [v]) h.append(k, one);
          }
          const status = res.statusCode ?? 0;
          const body = [204, 205, 304].includes(status) ? null : (Readable.toWeb(res) as ReadableStream<Uint8Array>);
          resolve(new Response(body, { status, statusText: res.statusMessage, headers: h }));
        },
      );
      req.on("error", reject);
      if (typeof init?.body === "string") req.write(init.body);
      req.end();
    });
}

function spiffeIDs(subjectAltName: string): string[] {
  return subjectAltName
    .split(", ")
    .filter((s) => s.startsWith("URI:spiffe://"))
    .map((s) => s.slice("URI:".length));
}

// run performs one command on the session and returns its line.
async function run(client: Client, c: Command): Promise<Record<string, unknown>> {
  const line: Record<string, unknown> = { op: c.op };
  try {
    switch (c.op) {
      case "list":
        line.tools = (await client.listTools()).tools.map((t) => t.name);
        break;
      case "resources":
        line.resources = (await client.listResources()).resources.map((r) => r.uri);
        break;
      case "prompts":
        line.prompts = (await client.listPrompts()).prompts.map((p) => p.name);
        break;
      case "call":
        line.tool = c.tool;
        line.result = await client.callTool({ name: c.tool, arguments: c.args });
        break;
      case "read":
        line.uri = c.uri;
        line.result = await client.readResource({ uri: c.uri });
        break;
      case "prompt":
        line.prompt = c.prompt;
        line.result = await client.getPrompt({ name: c.prompt, arguments: c.args });
        break;
      case "templates":
        line.templates = (await client.listResourceTemplates()).resourceTemplates.map((t) => t.uriTemplate);
        break;
      case "complete":
        line.ref = c.target;
        line.result = await client.complete({
          ref: c.ref === "ref/prompt" ? { type: "ref/prompt", name: c.target } : { type: "ref/resource", uri: c.target },
          argument: { name: c.arg, value: c.value },
        });
        break;
    }
  } catch (err) {
    line.error = errorJSON(err);
  }
  return line;
}

// errorJSON renders an MCP error (McpError: code, message, data) or a
// transport error (StreamableHTTPError: code = the HTTP status).
function errorJSON(err: unknown): Record<string, unknown> {
  if (err instanceof Error) {
    const e = err as Error & { code?: unknown; data?: unknown };
    const out: Record<string, unknown> = { name: e.name, message: e.message };
    if (e.code !== undefined) out.code = e.code;
    if (e.data !== undefined) out.data = e.data;
    return out;
  }
  return { message: String(err) };
}

function print(line: Record<string, unknown>): void {
  process.stdout.write(JSON.stringify(line) + "\n");
}

async function main(): Promise<number> {
  let flags: Flags;
  try {
    flags = parseArgs(process.argv.slice(2));
  } catch (err) {
    process.stderr.write(`${(err as Error).message}\n${usage}\n`);
    return 2;
  }
  const headers: Record<string, string> = {};
  if (flags.token) headers.Authorization = `Bearer ${flags.token}`;
  const fetch = flags.svidDir ? spiffeFetch(flags.svidDir, flags.serverID) : undefined;
  const transport = new StreamableHTTPClientTransport(flags.url, { requestInit: { headers }, fetch });
  const client = new Client({ name: "agentid-example-client", version: "0.0.0" });
  try {
    await client.connect(transport);
  } catch (err) {
    print({ op: "connect", error: errorJSON(err) });
    return 1;
  }
  print({ op: "connect", server: client.getServerVersion(), protocolVersion: transport.protocolVersion });
  try {
    for (const c of flags.commands) {
      print(await run(client, c));
    }
  } finally {
    await client.close();
  }
  return 0;
}

process.exitCode = await main();
