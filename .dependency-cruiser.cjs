// Import boundaries of fedtune, checked in CI by `npm run check:boundaries` (dependency-cruiser).
// Each rule says why it exists; ARCHITECTURE.md has the picture. A rule broken on purpose needs a reason here,
// never a silent exception.
/** @type {import('dependency-cruiser').IConfiguration} */
module.exports = {
  forbidden: [
    {
      name: 'coordinator-not-to-client-side',
      severity: 'error',
      comment:
        'A coordinator host needs no ML runtime: coordinator/ never loads the SDK (and with it tfjs) or the ' +
        'example programs. What both sides must agree on lives in proto/.',
      from: { path: '^coordinator/' },
      to: { path: '^(client-sdk|examples)/' },
    },
    {
      name: 'proto-is-the-bottom-layer',
      severity: 'error',
      comment:
        'proto/ holds what both sides agree on (wire, tensor stream, sealing, SecAgg maths, errors); it is ' +
        'imported by the coordinator and the SDK and must import neither, nor the examples.',
      from: { path: '^proto/' },
      to: { path: '^(coordinator|client-sdk|examples)/' },
    },
    {
      name: 'proto-grpc-only-in-wire-layer',
      severity: 'error',
      comment:
        'The SecAgg core, tensor stream, sealing and errors are wire-agnostic (usable over any transport and ' +
        'loadable without gRPC): only the wire layer, proto/load.ts and the generated types, imports @grpc/*. ' +
        'Status codes come from proto/errors.ts.',
      from: { path: '^proto/', pathNot: '^proto/(load\\.ts|generated/)' },
      to: { path: '(^|/)node_modules/@grpc/' },
    },
    {
      name: 'shipped-code-not-to-examples-tests-bench',
      severity: 'error',
      comment:
        'The package ships coordinator/, client-sdk/ and proto/ (dist/ and proto/ in package.json "files"); ' +
        'examples/, test/ and bench/ are not published, so shipped code that imports them breaks once installed.',
      from: { path: '^(coordinator|client-sdk|proto)/' },
      to: { path: '^(examples|test|bench)/' },
    },
    {
      name: 'sdk-not-to-coordinator',
      severity: 'error',
      comment:
        'A site embeds the SDK and talks to a coordinator only over the wire. The one exception is the demo ' +
        'simulation (client-sdk/demo/simulate.ts), which runs a coordinator in-process on purpose.',
      from: { path: '^client-sdk/', pathNot: '^client-sdk/demo/simulate\\.ts$' },
      to: { path: '^coordinator/' },
    },
    {
      name: 'no-circular-in-coordinator',
      severity: 'error',
      comment:
        'Two coordinator modules that import each other are one concept split badly: they cannot be read, ' +
        'tested or replaced alone. A cycle closed only by a type-only import is allowed: the observers in ' +
        'coordinator/ops/ name the Coordinator type they watch, which costs nothing at run time and keeps them ' +
        'out of the round core. (check:boundaries still runs with --ignore-known against an empty baseline.)',
      from: { path: '^coordinator/' },
      to: { path: '^coordinator/', circular: true, viaOnly: { dependencyTypesNot: ['type-only'] } },
    },
    {
      name: 'not-to-unresolvable',
      severity: 'error',
      comment:
        'An import that does not resolve is a build break or a missing dependency in package.json. ' +
        '@tensorflow/tfjs-node-gpu is an optional dependency (its install downloads libtensorflow): ' +
        'client-sdk/model/backend.ts loads it only when present. @webgpu/types has type declarations and no ' +
        'JavaScript entry, so a `/// <reference types>` to it (client-sdk/engine) never resolves to a module; it ' +
        'is installed through the webgpu backend, not declared in package.json (it should be, as a devDependency). ' +
        'fedtune/coordinator and fedtune/client-sdk are the package importing itself through its exports, which ' +
        'point into dist/: they resolve only after the build (test/public-api.test.ts type-checks them then).',
      from: {},
      to: { couldNotResolve: true, pathNot: '^(@tensorflow/tfjs-node-gpu|@webgpu/types|fedtune/coordinator|fedtune/client-sdk)$' },
    },
    {
      name: 'not-to-dev-dep',
      severity: 'error',
      comment: 'Shipped code must not need a devDependency at run time: an installed package would lack it. ' + 'Type-only imports are erased and allowed.',
      from: { path: '^(coordinator|client-sdk|proto)/' },
      to: { dependencyTypes: ['npm-dev'], dependencyTypesNot: ['type-only'] },
    },
  ],
  options: {
    doNotFollow: { path: '(^|/)node_modules/' },
    exclude: { path: '(^|/)dist/' },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    enhancedResolveOptions: {
      exportsFields: ['exports'],
      conditionNames: ['import', 'require', 'node', 'default', 'types'],
      extensions: ['.ts', '.d.ts', '.js', '.json'],
    },
    reporterOptions: {
      text: { highlightFocused: true },
    },
  },
};
