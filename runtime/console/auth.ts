import { randomBytes, timingSafeEqual } from "node:crypto";
import type { IncomingMessage } from "node:http";

/** The session cookie's name. */
export const SESSION_COOKIE = "jetfn_console";

/** The header every changing request carries its CSRF token in. */
export const CSRF_HEADER = "x-csrf-token";

/** How long a login lasts. */
const SESSION_MS = 12 * 60 * 60_000;

/** Sessions kept at most (each login makes one): the oldest goes first. */
const MAX_SESSIONS = 1000;

export interface Session {
  /** The token the page sends back in {@link CSRF_HEADER} with every change. */
  readonly csrf: string;
  readonly expires: number;
}

/**
 * Who may use the console. With `JETFN_CONSOLE_TOKEN`, a login (the token, checked in
 * constant time) makes a session: a random id in an `HttpOnly`, `SameSite=Strict` cookie, and
 * its own CSRF token. Without one (loopback only) everyone who reaches the port is in, with
 * one CSRF token for the process. Either way a changing request must carry the CSRF token in
 * a header, which a page of another origin can neither read nor set.
 */
export class ConsoleAuth {
  readonly #token?: Buffer;
  readonly #sessions = new Map<string, Session>();
  readonly #open?: Session;
  readonly #now: () => number;

  constructor(options: { token?: string; now?: () => number }) {
    this.#now = options.now ?? Date.now;
    if (options.token !== undefined) this.#token = Buffer.from(options.token);
    else this.#open = { csrf: randomToken(), expires: Number.POSITIVE_INFINITY };
  }

  /** Whether a login is needed. */
  get required(): boolean {
    return this.#token !== undefined;
  }

  /** The request's session; undefined when it must log in. */
  session(req: IncomingMessage): Session | undefined {
    if (this.#open) return this.#open;
    const id = cookies(req)[SESSION_COOKIE];
    if (!id) return undefined;
    const session = this.#sessions.get(id);
    if (!session) return undefined;
    if (session.expires <= this.#now()) {
      this.#sessions.delete(id);
      return undefined;
    }
    return session;
  }

  /** Checks a login's token; returns the `Set-Cookie` value of its new session, or undefined when wrong. */
  login(token: string, secure: boolean): string | undefined {
    if (!this.#token) return undefined;
    const given = Buffer.from(token);
    // timingSafeEqual needs equal lengths; comparing against itself keeps the time the same.
    const ok = given.length === this.#token.length ? timingSafeEqual(given, this.#token) : !timingSafeEqual(this.#token, this.#token);
    if (!ok) return undefined;
    const id = randomToken();
    if (this.#sessions.size >= MAX_SESSIONS) this.#sessions.delete(this.#sessions.keys().next().value!);
    this.#sessions.set(id, { csrf: randomToken(), expires: this.#now() + SESSION_MS });
    return sessionCookie(id, SESSION_MS / 1000, secure);
  }

  /** Ends the request's session; returns the `Set-Cookie` value that clears the cookie. */
  logout(req: IncomingMessage, secure: boolean): string {
    const id = cookies(req)[SESSION_COOKIE];
    if (id) this.#sessions.delete(id);
    return sessionCookie("", 0, secure);
  }

  /** Whether a changing request carries its session's CSRF token. */
  csrfValid(req: IncomingMessage, session: Session): boolean {
    const sent = req.headers[CSRF_HEADER];
    if (typeof sent !== "string") return false;
    const a = Buffer.from(sent);
    const b = Buffer.from(session.csrf);
    return a.length === b.length && timingSafeEqual(a, b);
  }
}

function sessionCookie(value: string, maxAgeS: number, secure: boolean): string {
  return `${SESSION_COOKIE}=${value}; Path=/; HttpOnly; SameSite=Strict; Max-Age=${maxAgeS}${secure ? "; Secure" : ""}`;
}

function randomToken(): string {
  return randomBytes(32).toString("base64url");
}

/** The request's cookies by name (the first of each). */
export function cookies(req: IncomingMessage): Record<string, string> {
  const found = Object.create(null) as Record<string, string>;
  for (const part of (req.headers.cookie ?? "").split(";")) {
    const eq = part.indexOf("=");
    if (eq < 0) continue;
    const name = part.slice(0, eq).trim();
    if (name && !(name in found)) found[name] = part.slice(eq + 1).trim();
  }
  return found;
}

/** Whether `host` is a loopback address (the console may then run without a token). */
export function isLoopback(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, "").toLowerCase();
  return h === "localhost" || h === "::1" || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(h);
}
