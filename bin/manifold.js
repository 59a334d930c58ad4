#!/usr/bin/env node
// Manifold is TypeScript run by Node's type stripping, which needs Node.js 24 or newer.
const [major] = process.versions.node.split('.').map(Number);
if (major < 24) {
  process.stderr.write(
    `manifold: needs Node.js 24 or newer (this is ${process.version}); run it through npm (npm start / npx manifold), which uses the Node 24 the project installs\n`,
  );
  process.exit(1);
}
const { main } = await import('../src/main.ts');
await main(process.argv.slice(2));
