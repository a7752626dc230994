// Run 22's regime table (bench/QUALITY.md "Run 22"), from the project's RDP accountant before any GPU time: for each
// candidate population N (sites of 4, 2 or 1 e-mails, the same 4,624 training e-mails), expected cohort m and round
// count T, the z that keeps ε ≤ 8 at δ 1e-5 (and at δ = 1/N for comparison), DP's noise on a value of the round's
// mean z·C/m at C 2, and the site trainings a cell costs (m·T).
//   node dist/bench/quality-run22-regimes.js
import { RUN22_CANDIDATES, zForEpsilon } from './quality-configs-run22';

const C = 2;
const lines = ['| N (e-mails a site) | m | T | q | z, δ 1e-5 | z·C/m | z, δ 1/N | site trainings m·T |', '| --- | --- | --- | --- | --- | --- | --- | --- |'];
for (const r of RUN22_CANDIDATES) {
  const z = zForEpsilon(r);
  lines.push(
    `| ${r.sites} (${r.perSite}) | ${r.cohort} | ${r.rounds} | ${(r.cohort / r.sites).toFixed(4)} | ${z.toFixed(3)} | ${((z * C) / r.cohort).toFixed(4)} | ${zForEpsilon(r, 8, 1 / r.sites).toFixed(3)} | ${r.cohort * r.rounds} |`,
  );
}
process.stdout.write(`${lines.join('\n')}\n`);
