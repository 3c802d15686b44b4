// The official MCP TypeScript SDK (npm @modelcontextprotocol/sdk, pinned in scripts/test)
// as a second, independent client of a Shoal MCP channel: list the tools and call one.
// Run by tests/tests/mcp.rs:
//
//     SHOAL_MCP_JS=<folder with node_modules> node ts_client.mjs URL API_KEY
//
// Prints one JSON line: the tools (name, input schema) and a call's result.

import { createRequire } from "node:module";
import path from "node:path";

const dir = process.env.SHOAL_MCP_JS;
if (!dir) {
  console.error("SHOAL_MCP_JS is not set (the folder npm installed the SDK in)");
  process.exit(2);
}
const require = createRequire(path.join(dir, "package.json"));
const { Client } = require("@modelcontextprotocol/sdk/client/index.js");
const { StreamableHTTPClientTransport } = require("@modelcontextprotocol/sdk/client/streamableHttp.js");

const [url, key] = process.argv.slice(2);
const transport = new StreamableHTTPClientTransport(new URL(url), {
  requestInit: { headers: { "X-API-Key": key } },
});
const client = new Client({ name: "shoal-test", version: "1.0.0" });
await client.connect(transport);
const { tools } = await client.listTools();
const called = await client.callTool({
  name: "crm_get-client",
  arguments: { code: "TS", age: 7, tags: ["a"] },
});
const failed = await client.callTool({ name: "crm_get-client", arguments: { code: "TS" } });
console.log(
  JSON.stringify({
    protocol: transport.protocolVersion ?? null,
    tools: tools.map((t) => ({ name: t.name, inputSchema: t.inputSchema, outputSchema: t.outputSchema ?? null })),
    called,
    failed,
  }),
);
await transport.terminateSession();
await client.close();
