// A site's side of federated evaluation: the coordinator sends an EvaluateTask for a candidate version; the site
// downloads it (checking its hash against the task), runs the Trainer's evaluate on its validation split and
// reports loss / accuracy / examples with ReportEvaluation. A trainer without evaluate, or one whose figures lack
// eval_loss and eval_examples (no validation split), declines (num_examples 0) so the coordinator need not wait.
import type { EvaluateTask__Output } from '../proto/generated/fedtune/v1/EvaluateTask';
import type { EvaluationReport } from '../proto/generated/fedtune/v1/EvaluationReport';
import { checkEvaluationReport } from '../proto/limits';
import { sortByName, type NamedTensor } from '../proto/tensors';
import type { Trainer } from './trainer';

export interface EvaluationDone {
  readonly taskId: string;
  readonly version: number;
  /** 0 when the site declined. */
  readonly numExamples: number;
  readonly loss: number;
  readonly accuracy?: number;
}

export interface EvaluateContext {
  readonly token: string;
  readonly trainer: Trainer;
  /** Downloads the task's candidate; rejects unless its data bytes hash to `sha256Hex`. */
  download(taskId: string, sha256Hex: string): Promise<NamedTensor[]>;
  send(req: EvaluationReport): Promise<void>;
}

/** What the trainer's metrics say, as a report's figures; null when they cannot be reported (decline). */
export function figuresOf(m: Readonly<Record<string, number>>): { numExamples: number; loss: number; accuracy?: number } | null {
  const n = m.eval_examples;
  const loss = m.eval_loss;
  if (n === undefined || loss === undefined || !Number.isSafeInteger(n) || n < 1) return null;
  return { numExamples: n, loss, ...(m.eval_accuracy !== undefined ? { accuracy: m.eval_accuracy } : {}) };
}

/** Evaluates the task's candidate and reports; throws what went wrong (the client logs it). */
export async function runEvaluateTask(ctx: EvaluateContext, t: EvaluateTask__Output): Promise<EvaluationDone> {
  let figures: ReturnType<typeof figuresOf> = null;
  if (ctx.trainer.evaluate) {
    const adapter = sortByName(await ctx.download(t.task_id, t.adapter_sha256));
    figures = figuresOf(await ctx.trainer.evaluate(adapter, t.lora_stack ? { stack: true } : undefined));
  }
  const req: EvaluationReport = {
    session_token: ctx.token,
    task_id: t.task_id,
    version: t.version,
    num_examples: figures?.numExamples ?? 0,
    loss: figures?.loss ?? 0,
    accuracy: figures?.accuracy ?? 0,
    has_accuracy: figures?.accuracy !== undefined,
  };
  checkEvaluationReport(req); // a NaN or out-of-range figure is refused here, with its name, before it is sent
  await ctx.send(req);
  return {
    taskId: t.task_id,
    version: t.version,
    numExamples: Number(req.num_examples),
    loss: Number(req.loss),
    ...(figures?.accuracy !== undefined ? { accuracy: figures.accuracy } : {}),
  };
}
