// When a site's report is "the same report again". A site whose connection drops during ReportMetrics or
// ReportEvaluation cannot know whether the coordinator got it, so the SDK sends it again; the coordinator answers a
// repeat of a report it already accepted with the same ack and changes nothing, and refuses a different second
// report (ALREADY_EXISTS). "The same" is decided on the SHA-256 of the report's canonical protobuf encoding:
// - every field the site reports takes part, bit for bit (a double is its 8 bytes: 0.1 + 0.2 is not 0.3, and -0 is
//   not 0), so a repeat can never change a figure that was counted, however slightly;
// - the session token does not: it says who sends, which the lookup checks (the task must be this site's), and it is
//   a secret a task should not keep, even hashed;
// - a map's entries are encoded in an order fixed by their names alone: protobuf leaves map order to the sender, and
//   the same metrics sent in another order are the same report.
// A digest rather than the fields themselves: 32 bytes per task, kept after its attempt closes (so a repeat that
// arrives after the round moved on is still answered OK), and it covers fields the coordinator does not keep.
import { createHash } from 'node:crypto';
import type { EvaluationReport__Output } from '../proto/generated/fedtune/v1/EvaluationReport';
import type { MetricsReport__Output } from '../proto/generated/fedtune/v1/MetricsReport';
import { loadFedtuneProto } from '../proto/load';

const sha256 = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

/** The digest of a MetricsReport (session token aside, metrics in an order of their names). */
export function metricsReportDigest(r: MetricsReport__Output): string {
  const byName = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);
  const metrics = Object.fromEntries(Object.entries(r.metrics ?? {}).sort(([a], [b]) => byName(a, b)));
  return sha256(loadFedtuneProto().fedtune.v1.Federation.service.ReportMetrics.requestSerialize({ ...r, session_token: '', metrics }));
}

/** The digest of an EvaluationReport (session token aside). */
export function evaluationReportDigest(r: EvaluationReport__Output): string {
  return sha256(loadFedtuneProto().fedtune.v1.Federation.service.ReportEvaluation.requestSerialize({ ...r, session_token: '' }));
}
