/**
 * `jetfn new --route`: the route is checked as `routes:` checks it before anything is
 * written, and added with `publish:` the new function's subject.
 */
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { ConfigError } from "../../runtime/config/errors.ts";
import { loadConfig } from "../../runtime/config/load.ts";
import { newFunction } from "../../runtime/scaffold.ts";

const YAML = `streams:
  - name: SHOP
    subjects: ["shop.>"]

functions:
  - name: existing
    handler: functions/existing.ts
    stream: SHOP
    subjects: ["shop.existing"]
`;

const made: string[] = [];
afterAll(() => {
  for (const dir of made) rmSync(dir, { recursive: true, force: true });
});

function project(yaml = YAML): string {
  const dir = mkdtempSync(path.join(tmpdir(), "jetfn-new-"));
  made.push(dir);
  mkdirSync(path.join(dir, "functions"));
  writeFileSync(path.join(dir, "functions", "existing.ts"), "export default async () => {};\n");
  writeFileSync(path.join(dir, "functions.yaml"), yaml);
  return path.join(dir, "functions.yaml");
}

/** The message of the ConfigError `run` throws. */
function refusal(run: () => unknown): string {
  try {
    run();
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return (error as Error).message;
  }
  throw new Error("not refused");
}

describe("newFunction with a route", () => {
  it("adds routes: with the route publishing to the function's subject, and the result loads", () => {
    const file = project();
    const created = newFunction(file, { name: "ship-order", subject: "shop.paid", route: "  POST   /orders/:id/ship " });
    expect(created.route).toMatchObject({ route: "POST /orders/:id/ship", method: "POST", path: "/orders/:id/ship" });
    expect(readFileSync(file, "utf8")).toBe(
      `${YAML}  - name: ship-order\n    handler: functions/ship-order.ts\n    stream: SHOP\n    subjects:\n      - shop.paid\n\nroutes:\n  - route: POST /orders/:id/ship\n    publish: shop.paid\n`,
    );
    expect(loadConfig(file).routes).toMatchObject([{ route: "POST /orders/:id/ship", target: { kind: "publish", subject: "shop.paid" } }]);

    // A second one goes to the end of routes:.
    newFunction(file, { name: "refund", subject: "shop.refund", route: "PUT /refunds" });
    expect(loadConfig(file).routes.map((r) => r.route)).toEqual(["POST /orders/:id/ship", "PUT /refunds"]);
  });

  it("refuses a bad route, a GET route, a subject with wildcards and a route taken, writing nothing", () => {
    const file = project(`${YAML}routes:\n  - { route: POST /orders/:id, publish: shop.orders }\n`);
    const before = readFileSync(file, "utf8");
    const attempt = (route: string, subject = "shop.paid") => refusal(() => newFunction(file, { name: "ship-order", subject, route }));

    expect(attempt("FOO /orders")).toContain('--route expected a method (GET, POST, PUT, PATCH, DELETE) and a path like "POST /orders"');
    expect(attempt("POST orders")).toContain('got "POST orders"');
    expect(attempt("POST /a b")).toContain('got "POST /a b"');
    expect(attempt("GET /ship")).toContain("--route GET /ship: a publishing route takes the event from the request body, and GET has none");
    expect(attempt("POST /ship", "shop.*")).toContain("--route publishes to one subject; shop.* has wildcards");
    expect(attempt("POST /orders/:other")).toContain(
      "--route POST /orders/:other: routes: already has POST /orders/:id, which takes the same requests",
    );

    expect(readFileSync(file, "utf8")).toBe(before);
    expect(existsSync(path.join(path.dirname(file), "functions", "ship-order.ts"))).toBe(false);
  });
});
