/** `routes:` and `ordering:` in functions.yaml: compiled, and their errors located. */
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { loadConfig } from "../../runtime/config/index.ts";
import { cleanup, errorsOf, FUNCTION_A, ORDERS_STREAM, project } from "./config-fixtures.ts";

afterAll(cleanup);

const functions = [...ORDERS_STREAM, "functions:", ...FUNCTION_A];

describe("routes: in functions.yaml", () => {
  it("compiles publish and invoke routes, with path parameters, auth and encodings", () => {
    const file = project(
      [
        ...functions,
        "    invoke: true",
        "routes:",
        "  - route: POST /orders",
        "    publish: orders.created",
        "    schema: functions/schemas/order.ts#Order",
        "    auth: bearer",
        "  - route: POST /orders/:id/cancel",
        "    publish: orders.{id}.cancelled",
        "  - route: PUT /quote",
        "    invoke: a",
        "    encoding: text",
      ],
      ["functions/a.ts", "functions/schemas/order.ts"],
    );
    const config = loadConfig(file);
    const root = path.dirname(file);
    expect(config.functions[0]!.invoke).toBe(true);
    expect(config.routes).toEqual([
      {
        route: "POST /orders",
        method: "POST",
        path: "/orders",
        segments: [{ literal: "orders" }],
        target: { kind: "publish", subject: "orders.created" },
        schema: { file: path.join(root, "functions/schemas/order.ts"), exportName: "Order" },
        auth: "bearer",
        encoding: "json",
      },
      {
        route: "POST /orders/:id/cancel",
        method: "POST",
        path: "/orders/:id/cancel",
        segments: [{ literal: "orders" }, { param: "id" }, { literal: "cancel" }],
        target: { kind: "publish", subject: "orders.{id}.cancelled" },
        auth: "none",
        encoding: "json",
      },
      {
        route: "PUT /quote",
        method: "PUT",
        path: "/quote",
        segments: [{ literal: "quote" }],
        target: { kind: "invoke", function: "a" },
        auth: "none",
        encoding: "text",
      },
    ]);
  });

  it("names file, line and key of each bad route", () => {
    expect(
      errorsOf([
        ...functions,
        "routes:",
        "  - route: FETCH /orders",
        "    publish: orders.created",
        "  - route: POST /orders/:id",
        "    publish: orders.{order}.x",
        "  - route: POST /orders/:key",
        "    invoke: missing",
        "  - route: POST /both",
        "    publish: a.b",
        "    invoke: a",
        "  - route: POST /wild",
        "    publish: orders.*",
        "  - route: POST /text",
        "    publish: t.x",
        "    encoding: text",
        "    schema: functions/a.ts#S",
        "  - route: POST /s",
        "    publish: s.x",
        "    schema: functions/nope.ts",
        "    auth: basic",
      ]),
    ).toEqual([
      'functions.yaml:10:12 routes[0].route: expected a method (GET, POST, PUT, PATCH, DELETE) and a path like "POST /orders" or "POST /orders/:id/cancel", got "FETCH /orders"',
      "functions.yaml:13:14 routes[1].publish: {order} is not a parameter of the route's path /orders/:id",
      "functions.yaml:14:12 routes[2].route: POST /orders/:key matches the same requests as routes[1]",
      'functions.yaml:15:13 routes[2].invoke: no function named "missing" in functions:',
      "functions.yaml:16:5 routes[3]: expected exactly one of publish: <subject> or invoke: <function>",
      'functions.yaml:20:14 routes[4].publish: expected a NATS subject without wildcards, optionally with {param} tokens, like orders.{id}.cancelled, got "orders.*"',
      "functions.yaml:24:13 routes[5].schema: a schema checks JSON bodies; this route's encoding is text",
      'functions.yaml:28:11 routes[6].auth: expected none or bearer, got "basic"',
    ]);
  });

  it("gives an invoke route its function's encoding unless it names one", () => {
    const file = project([
      ...functions,
      "    encoding: binary",
      "routes:",
      "  - { route: POST /a, invoke: a }",
      "  - { route: POST /b, invoke: a, encoding: text }",
    ]);
    expect(loadConfig(file).routes.map((r) => r.encoding)).toEqual(["binary", "text"]);
  });

  it("refuses a schema file that does not exist", () => {
    expect(errorsOf([...functions, "routes:", "  - route: POST /s", "    publish: s.x", "    schema: functions/nope.ts#S"])).toEqual([
      "functions.yaml:12:13 routes[0].schema: schema file not found: functions/nope.ts",
    ]);
  });

  it("takes invoke: true only in a function entry", () => {
    expect(errorsOf(["defaults:", "  invoke: true", ...functions])).toEqual([
      'functions.yaml:2:3 defaults.invoke: "invoke" is set per function and cannot be in defaults',
    ]);
  });
});

describe("ordering: in functions.yaml", () => {
  it("compiles the key, partitions and lease TTL, with defaults", () => {
    const file = project([
      ...functions,
      "    ordering: { key: customer.id, partitions: 8, leaseTtl: 5s }",
      "  - name: b",
      "    handler: functions/b.ts",
      "    stream: ORDERS",
      "    subjects: [orders.b]",
      "    ordering: { key: subject:2 }",
      "  - name: c",
      "    handler: functions/b.ts",
      "    stream: ORDERS",
      "    subjects: [orders.c]",
      "    ordering: { key: header:Tenant-Id }",
    ]);
    const [a, b, c] = loadConfig(file).functions;
    expect(a!.ordering).toEqual({ key: { kind: "json", path: ["customer", "id"] }, partitions: 8, leaseTtlMs: 5000 });
    expect(b!.ordering).toEqual({ key: { kind: "subject", token: 2 }, partitions: 1, leaseTtlMs: 10_000 });
    expect(c!.ordering!.key).toEqual({ kind: "header", name: "Tenant-Id" });
  });

  it("names file, line and key of a bad ordering block", () => {
    expect(errorsOf([...functions, "    ordering: { key: subject:0, partitions: 0, leaseTtl: 100ms, extra: 1 }"])).toEqual([
      'functions.yaml:9:22 functions[0].ordering.key: expected a JSON path like customer.id, subject:2 or header:Name, got "subject:0"',
      "functions.yaml:9:45 functions[0].ordering.partitions: expected an integer from 1 to 1024, got 0",
      'functions.yaml:9:58 functions[0].ordering.leaseTtl: expected a duration of at least 500ms, got "100ms"',
      'functions.yaml:9:65 functions[0].ordering.extra: unknown key "extra"',
    ]);
    expect(errorsOf(["defaults:", "  ordering: { key: a }", ...functions])).toEqual([
      'functions.yaml:2:3 defaults.ordering: "ordering" is set per function and cannot be in defaults',
    ]);
  });
});
