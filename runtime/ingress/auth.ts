import { createHash, timingSafeEqual } from "node:crypto";

/**
 * The bearer tokens `auth: bearer` routes accept. Compared in constant time: every token is
 * held as its SHA-256 digest, and a presented token is hashed and compared with each of
 * them, so neither its length nor how much of it matches shows in the time taken.
 */
export class BearerTokens {
  readonly #digests: readonly Buffer[];

  constructor(tokens: readonly string[]) {
    this.#digests = tokens.map(digest);
  }

  get size(): number {
    return this.#digests.length;
  }

  /** Checks an `Authorization` header: `missing` without a bearer token, `invalid` for an unknown one. */
  check(authorization: string | undefined): "ok" | "missing" | "invalid" {
    const match = authorization === undefined ? null : /^Bearer +(\S+) *$/i.exec(authorization);
    if (!match) return "missing";
    const presented = digest(match[1]!);
    let found = false;
    for (const known of this.#digests) found = timingSafeEqual(presented, known) || found;
    return found ? "ok" : "invalid";
  }
}

function digest(token: string): Buffer {
  return createHash("sha256").update(token).digest();
}
