// Typed operations for a TypeScript front end: the schema, and the reference client's
// named operations as documents. One command, nothing to install first:
//
//   npx --yes -p @graphql-codegen/cli@5 -p @graphql-codegen/typescript@4 \
//     -p @graphql-codegen/typescript-operations@4 -p graphql@16 graphql-codegen
//
// writes generated/graphql.ts. npx puts the plugins beside the CLI, not in this
// project, so they are loaded from where the CLI itself was installed.
import { createRequire } from "node:module";

import type { CodegenConfig } from "@graphql-codegen/cli";

const besideTheCli = createRequire(process.argv[1]);

const config: CodegenConfig = {
  schema: "schema.graphql",
  documents: "backend/static/client/operations.js",
  pluginLoader: (name: string) => besideTheCli(name),
  generates: {
    "generated/graphql.ts": {
      plugins: ["typescript", "typescript-operations"],
      config: {
        scalars: { DateTime: "string" },
        enumsAsTypes: true,
        avoidOptionals: true,
        skipTypename: true,
      },
    },
  },
};

export default config;
