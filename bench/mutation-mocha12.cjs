// Preloaded into every Stryker process (bench/mutation.mjs sets NODE_OPTIONS): mocha 12 ships
// its CLI helpers as .cjs files, and @stryker-mutator/mocha-runner 10.0 requires them without an extension
// (`mocha/lib/cli/run-helpers`), which Node's CommonJS resolver completes with .js/.json/.node only. Letting it
// also try .cjs (loaded as CommonJS, which a .cjs file is) makes those requires find mocha 12's files.
// eslint-disable-next-line @typescript-eslint/no-require-imports -- a --require preload is CommonJS by definition
const Module = require('node:module');
if (!Module._extensions['.cjs']) Module._extensions['.cjs'] = Module._extensions['.js'];
