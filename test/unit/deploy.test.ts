/**
 * The deployment files agree with the code they deploy: ports and probe paths the host
 * serves, grace periods longer than the shutdown timeout, KEDA triggers naming consumers
 * that functions.yaml creates. (No Docker engine or cluster here: these are consistency
 * checks; the Dockerfile's own steps run in test/e2e/dockerfile.test.ts.)
 */
import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { parse, parseAllDocuments } from "yaml";
import { loadConfig } from "../../runtime/config/load.ts";
import { loadEnv } from "../../runtime/config/env.ts";
import { REPO_ROOT } from "../support/project.ts";

const deploy = (...parts: string[]) => path.join(REPO_ROOT, "deploy", ...parts);
const config = loadConfig(path.join(REPO_ROOT, "functions.yaml"));
const defaults = loadEnv({});

interface Container {
  env: { name: string; value?: string }[];
  ports: { name: string; containerPort: number }[];
  readinessProbe: { httpGet: { path: string; port: string } };
  livenessProbe: { httpGet: { path: string; port: string } };
}

describe("deploy/compose.yaml", () => {
  const compose = parse(readFileSync(deploy("compose.yaml"), "utf8")) as {
    services: Record<string, { build?: string; environment?: Record<string, string>; stop_grace_period?: string; volumes?: string[]; ports?: string[] }>;
  };

  it("builds jetfn from the repository's Dockerfile and points it at the nats service", () => {
    const jetfn = compose.services.jetfn!;
    expect(existsSync(path.join(deploy(), jetfn.build!, "Dockerfile"))).toBe(true);
    expect(jetfn.environment!.NATS_URL).toBe("nats://nats:4222");
    expect(compose.services.nats!.ports).toContain("4222:4222");
    expect(jetfn.ports).toContain(`${defaults.httpPort}:${defaults.httpPort}`);
  });

  it("gives in-flight work longer than JETFN_SHUTDOWN_TIMEOUT before a SIGKILL", () => {
    const jetfn = compose.services.jetfn!;
    const shutdown = loadEnv({ JETFN_SHUTDOWN_TIMEOUT: jetfn.environment!.JETFN_SHUTDOWN_TIMEOUT }).shutdownTimeoutMs;
    expect(Number.parseInt(jetfn.stop_grace_period!, 10) * 1000).toBeGreaterThan(shutdown);
  });

  it("mounts the Prometheus config that scrapes jetfn:8080", () => {
    const [source] = compose.services.prometheus!.volumes![0]!.split(":");
    expect(readFileSync(path.join(deploy(), source!, "prometheus.yml"), "utf8")).toContain('"jetfn:8080"');
  });
});

describe("deploy/kubernetes", () => {
  const docs = parseAllDocuments(readFileSync(deploy("kubernetes", "jetfn.yaml"), "utf8")).map((d) => d.toJS() as Record<string, any>);
  const deployment = docs.find((d) => d.kind === "Deployment")!;
  const service = docs.find((d) => d.kind === "Service")!;
  const container = deployment.spec.template.spec.containers[0] as Container;
  const keda = parse(readFileSync(deploy("kubernetes", "keda.yaml"), "utf8")) as Record<string, any>;

  it("probes the paths the host serves, on its port", () => {
    expect(container.readinessProbe.httpGet.path).toBe("/readyz");
    expect(container.livenessProbe.httpGet.path).toBe("/healthz");
    expect(container.ports.find((p) => p.name === container.readinessProbe.httpGet.port)?.containerPort).toBe(defaults.httpPort);
    expect(service.metadata.annotations["prometheus.io/path"]).toBe("/metrics");
  });

  it("passes only environment variables jetfn validates, and outlasts its shutdown timeout", () => {
    const env = Object.fromEntries(container.env.map((e) => [e.name, e.value ?? ""]));
    expect(Object.keys(env).every((name) => /^(NATS|JETFN|OTEL|LOG)_/.test(name))).toBe(true);
    const shutdown = loadEnv({ JETFN_SHUTDOWN_TIMEOUT: env.JETFN_SHUTDOWN_TIMEOUT }).shutdownTimeoutMs;
    expect(deployment.spec.template.spec.terminationGracePeriodSeconds * 1000).toBeGreaterThan(shutdown);
  });

  it("scales the Deployment on the consumers functions.yaml creates", () => {
    expect(keda.spec.scaleTargetRef.name).toBe(deployment.metadata.name);
    const consumers = keda.spec.triggers.map((t: { type: string; metadata: { stream: string; consumer: string } }) => {
      expect(t.type).toBe("nats-jetstream");
      return `${t.metadata.stream}/${t.metadata.consumer}`;
    });
    expect(consumers.sort()).toEqual(config.functions.map((f) => `${f.stream}/${f.durable}`).sort());
  });
});
