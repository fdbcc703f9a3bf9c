/**
 * NATS subject helpers. A subject is a `.`-separated list of non-empty tokens without
 * whitespace; in a filter, `*` matches exactly one token and `>` (last token only) matches
 * one or more trailing tokens.
 */

/** Options for {@link isValidSubject}. */
export interface SubjectOptions {
  /**
   * Whether `*` and `>` are allowed (filters and stream subjects); publish subjects such as
   * `output` and `deadLetter` must be literal.
   * @default true
   */
  readonly wildcards?: boolean;
}

/** True if `subject` is a well-formed NATS subject (or filter, when wildcards are allowed). */
export function isValidSubject(subject: string, options: SubjectOptions = {}): boolean {
  const wildcards = options.wildcards ?? true;
  if (subject.length === 0 || /[\s\0]/.test(subject)) return false;
  const tokens = subject.split(".");
  return tokens.every((token, index) => {
    if (token.length === 0) return false;
    if (token === "*") return wildcards;
    if (token === ">") return wildcards && index === tokens.length - 1;
    return !token.includes("*") && !token.includes(">");
  });
}

/**
 * True if every subject matched by `filter` is also matched by `streamSubject`, i.e. a
 * stream bound to `streamSubject` captures everything a consumer filtering on `filter` wants.
 * Both arguments should be valid subjects; invalid ones never cover nor are covered.
 */
export function subjectCovers(streamSubject: string, filter: string): boolean {
  if (!isValidSubject(streamSubject) || !isValidSubject(filter)) return false;
  const outer = streamSubject.split(".");
  const inner = filter.split(".");
  for (let i = 0; i < outer.length; i++) {
    const token = outer[i];
    const other = inner[i];
    // `>` swallows one or more tokens; the filter needs at least one left, of any kind.
    if (token === ">") return other !== undefined;
    if (other === undefined || other === ">") return false;
    if (token === "*") continue;
    if (other === "*" || other !== token) return false;
  }
  return inner.length === outer.length;
}
