/**
 * `promise`, or a rejection after `ms` (what it settles to later is dropped): the error says
 * `<what>: no answer within <ms> ms`, made by `error` (a plain Error by default).
 */
export function within<T>(
  promise: Promise<T>,
  ms: number,
  what: string,
  error: (message: string) => Error = (m) => new Error(m),
): Promise<T> {
  promise.catch(() => {});
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(error(`${what}: no answer within ${ms} ms`)), ms);
  });
  return Promise.race([promise, late]).finally(() => clearTimeout(timer));
}
