// Typed operations for a TypeScript front end: the schema, and the reference client's
// named operations as documents. With Node.js 20 or later:
//
//   npm ci            # the versions package-lock.json pins, into node_modules/
//   npm run codegen   # writes generated/graphql.ts
//
// package-lock.json pins the whole tree, not only the four packages package.json names:
// the codegen CLI's own dependencies (@whatwg-node/*, sync-fetch, @graphql-tools/*) take
// any newer minor version, and since September 2026 those ask for Node >= 22.15, so an
// unpinned install (`npx -p @graphql-codegen/cli@5 ...`) warns EBADENGINE on Node 20.
// The lock was made with `npm install --before=2026-09-01`: to move it on, pick a later
// date, then check that `npm ci` prints no EBADENGINE on the oldest Node you support.
import type { CodegenConfig } from "@graphql-codegen/cli";

const config: CodegenConfig = {
  schema: "schema.graphql",
  documents: "backend/static/client/operations.js",
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
