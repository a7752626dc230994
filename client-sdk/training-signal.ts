// The deadline in the site's TrainingPlan made real: a trainer's signal that fires before the round's deadline, so
// the site stops training while its upload can still arrive in time.
/**
 * The signal a trainer gets: the task's own, also aborted shortly before the round's deadline so that a site
 * stops training while its upload can still make it (a tenth of the time left, at most 2 s, is kept for that).
 */
export function trainingSignal(task: AbortSignal, deadline: number | undefined): { signal: AbortSignal; done: () => void } {
  if (deadline === undefined) return { signal: task, done: () => undefined };
  const c = new AbortController();
  const left = deadline - Date.now();
  const stopAt = Math.max(0, left - Math.min(2000, left / 10));
  const timer = setTimeout(() => c.abort(new Error(`training stopped: the round deadline (${new Date(deadline).toISOString()}) is near`)), stopAt);
  const onTask = (): void => c.abort(task.reason);
  if (task.aborted) onTask();
  else task.addEventListener('abort', onTask, { once: true });
  return {
    signal: c.signal,
    done: () => {
      clearTimeout(timer);
      task.removeEventListener('abort', onTask);
    },
  };
}
