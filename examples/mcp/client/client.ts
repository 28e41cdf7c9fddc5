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
//
// The first line is {"op":"connect","server":{…},"protocolVersion":"…"}
// or, when the session cannot be opened (401: no or a refused token),
// {"op":"connect","error":{…}} and exit status 1. A refused call is a
// result, not a failure: the exit status is 0 once every command ran.
// The token is the file's content (a JWT-SVID whose audience is the
// server's resource URI, e.g. written by `spire-agent api fetch jwt`), or
// $AGENTID_MCP_TOKEN; without either no Authorization header is sent.
import { readFileSync } from "node:fs";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";

type Command = { op: "list" } | { op: "call"; tool: string; args: Record<string, unknown> };

interface Flags {
  url: URL;
  token?: string;
  commands: Command[];
}

const usage = "usage: client.js --url URL [--token-file FILE] (list | call NAME [JSON-ARGS])...";

function parseArgs(argv: string[]): Flags {
  let url: URL | undefined;
  let token = process.env.AGENTID_MCP_TOKEN;
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
      case "list":
        commands.push({ op: "list" });
        break;
      case "call": {
        const tool = value();
        let args: Record<string, unknown> = {};
        if (i + 1 < argv.length && argv[i + 1].startsWith("{")) {
          const parsed: unknown = JSON.parse(argv[++i]);
          if (parsed === null || typeof parsed !== "object" || Array.isArray(parsed)) {
            throw new Error(`arguments of ${tool} must be a JSON object`);
          }
          args = parsed as Record<string, unknown>;
        }
        commands.push({ op: "call", tool, args });
        break;
      }
      default:
        throw new Error(`unknown argument ${JSON.stringify(a)}`);
    }
  }
  if (!url) throw new Error("--url is required");
  return { url, token, commands };
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
  const transport = new StreamableHTTPClientTransport(flags.url, { requestInit: { headers } });
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
      if (c.op === "list") {
        try {
          const { tools } = await client.listTools();
          print({ op: "list", tools: tools.map((t) => t.name) });
        } catch (err) {
          print({ op: "list", error: errorJSON(err) });
        }
        continue;
      }
      try {
        const result = await client.callTool({ name: c.tool, arguments: c.args });
        print({ op: "call", tool: c.tool, result });
      } catch (err) {
        print({ op: "call", tool: c.tool, error: errorJSON(err) });
      }
    }
  } finally {
    await client.close();
  }
  return 0;
}

process.exitCode = await main();
