// Shared by the federated evaluation and early stopping tests: a trainer whose evaluate reports figures computed
// from the adapter it was handed (so a test knows exactly what each site reported), and a raw task-stream reader.
import { createHash } from 'node:crypto';
import type * as grpc from '@grpc/grpc-js';
import type { FederationClient as RawClient } from '../proto/generated/fedtune/v1/Federation';
import type { TaskEvent__Output } from '../proto/generated/fedtune/v1/TaskEvent';
import type { EvaluationReport } from '../proto/generated/fedtune/v1/EvaluationReport';
import type { TensorList } from '../proto/tensors';
import type { TrainTask__Output } from '../proto/generated/fedtune/v1/TrainTask';
import { ConstantTrainer, join, reportMetrics, siteDelta, smallAdapter, upload, uploadFrames, type JoinedRaw } from './harness';

/** sha256 of an adapter's data bytes in order (what the download trailer carries). */
export function adapterSha(adapter: TensorList): string {
  const h = createHash('sha256');
  for (const t of adapter) h.update(Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength));
  return h.digest('hex');
}

/**
 * Trains like ConstantTrainer (+value on every element); evaluates with figures from `figures(level)`, where
 * level is the adapter's first element rounded (the number of rounds so far when every site adds 1).
 */
export class ScriptedEvalTrainer extends ConstantTrainer {
  /** sha256 of each adapter evaluated, in order. */
  readonly evaluated: string[] = [];
  constructor(
    value: number,
    numExamples: number,
    private readonly figures: (level: number) => Record<string, number>,
  ) {
    super(value, numExamples);
  }
  evaluate(adapter: TensorList): Promise<Record<string, number>> {
    this.evaluated.push(adapterSha(adapter));
    return Promise.resolve(this.figures(Math.round(adapter[0].data[0])));
  }
}

/** Every event of one task stream, with a way to wait for the first that matches. */
export function taskEvents(
  c: RawClient,
  token: string,
): {
  events: TaskEvent__Output[];
  next: (f: (e: TaskEvent__Output) => boolean) => Promise<TaskEvent__Output>;
  stream: grpc.ClientReadableStream<TaskEvent__Output>;
} {
  const events: TaskEvent__Output[] = [];
  const waiters: { f: (e: TaskEvent__Output) => boolean; r: (e: TaskEvent__Output) => void }[] = [];
  const stream = c.StreamTasks({ session_token: token });
  stream.on('error', () => undefined);
  stream.on('data', (ev: TaskEvent__Output) => {
    events.push(ev);
    for (const w of [...waiters]) if (w.f(ev)) (waiters.splice(waiters.indexOf(w), 1), w.r(ev));
  });
  const next = (f: (e: TaskEvent__Output) => boolean): Promise<TaskEvent__Output> => {
    const seen = events.find(f);
    return seen ? Promise.resolve(seen) : new Promise((r) => waiters.push({ f, r }));
  };
  return { events, next, stream };
}

/** ReportEvaluation as a promise (rejects with the gRPC error). */
export function reportEvaluation(c: RawClient, r: EvaluationReport): Promise<void> {
  return new Promise((res, rej) => c.ReportEvaluation(r, (e) => (e ? rej(e) : res())));
}

/** DownloadAdapter of an evaluation candidate: the data bytes' sha256 from the trailer, or the stream's error. */
export function downloadCandidate(c: RawClient, token: string, taskId: string): Promise<string> {
  return new Promise((res, rej) => {
    let sha = '';
    const call = c.DownloadAdapter({ session_token: token, version: 0, evaluation_task_id: taskId });
    call.on('data', (f: { trailer?: { sha256: Buffer } | null }) => {
      if (f.trailer) sha = Buffer.from(f.trailer.sha256).toString('hex');
    });
    call.on('end', () => res(sha));
    call.on('error', rej);
  });
}

/** Sites a and b joined on `c`, reading their task streams, their round-1 tasks uploaded (and reported, unless not). */
export async function twoSitesUploaded(
  c: RawClient,
  report = true,
): Promise<{ a: JoinedRaw; b: JoinedRaw; sa: ReturnType<typeof taskEvents>; sb: ReturnType<typeof taskEvents>; ta: TrainTask__Output; tb: TrainTask__Output }> {
  const a = await join(c, 'site-a');
  const b = await join(c, 'site-b');
  const sa = taskEvents(c, a.session_token);
  const sb = taskEvents(c, b.session_token);
  const [ta, tb] = (await Promise.all([sa.next((e) => !!e.train), sb.next((e) => !!e.train)])).map((e) => e.train!);
  for (const [who, t] of [
    [a, ta],
    [b, tb],
  ] as const) {
    await upload(c, uploadFrames({ who, task: t }, siteDelta(who.name, smallAdapter(0))));
    if (report) await reportMetrics(c, who.session_token, t.task_id, t.round);
  }
  return { a, b, sa, sb, ta, tb };
}
