/**
 * The deployment files agree with the code they deploy: ports and probe paths the host
 * serves, grace periods longer than the shutdown timeout, KEDA triggers naming consumers
 * that functions.yaml creates, files that mounts and provisioning point at. (No Docker
 * engine, Grafana or cluster here: these are consistency checks; the Dockerfile's own steps
 * run in test/e2e/dockerfile.test.ts.)
 */
import { existsSync, readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { parse, parseAllDocuments } from "yaml";
import { loadEnv } from "../../runtime/config/env.ts";
import { loadConfig } from "../../runtime/config/load.ts";
import { execForm, exposedPorts, healthcheck, parseDockerfile } from "../support/dockerfile.ts";
import { REPO_ROOT } from "../support/project.ts";

const deploy = (...parts: string[]) => path.join(REPO_ROOT, "deploy", ...parts);
const config = loadConfig(path.join(REPO_ROOT, "functions.yaml"));
const defaults = loadEnv({});
const ingressPort = defaults.ingressPort;

interface Container {
  env: { name: string; value?: string }[];
  ports: { name: string; containerPort: number }[];
  readinessProbe: { httpGet: { path: string; port: string } };
  livenessProbe: { httpGet: { path: string; port: string } };
}

describe("deploy/compose.yaml", () => {
  const compose = parse(readFileSync(deploy("compose.yaml"), "utf8")) as {
    services: Record<
      string,
      {
        image?: string;
        build?: string;
        environment?: Record<string, string>;
        stop_grace_period?: string;
        volumes?: string[];
        ports?: string[];
      }
    >;
  };
  /** The service's bind mounts as { host path (absolute), container path }. */
  const mounts = (service: string) =>
    (compose.services[service]!.volumes ?? []).map((volume) => {
      const [source = "", target = ""] = volume.split(":");
      return { source: path.resolve(deploy(), source), target };
    });

  it("builds jetfn from the repository's Dockerfile and points it at the nats service", () => {
    const jetfn = compose.services.jetfn!;
    expect(existsSync(path.join(deploy(), jetfn.build!, "Dockerfile"))).toBe(true);
    expect(jetfn.environment!.NATS_URL).toBe("nats://nats:4222");
    expect(compose.services.nats!.ports).toContain("4222:4222");
    expect(jetfn.ports).toContain(`${defaults.httpPort}:${defaults.httpPort}`);
    expect(jetfn.ports).toContain(`${ingressPort}:${ingressPort}`);
  });

  it("sends traces to the jaeger service's OTLP/HTTP port and publishes its UI", () => {
    const endpoint = new URL(compose.services.jetfn!.environment!.OTEL_EXPORTER_OTLP_ENDPOINT!);
    expect(compose.services[endpoint.hostname]?.image).toMatch(/^jaegertracing\/all-in-one:/);
    expect(endpoint.port).toBe("4318");
    expect(compose.services.jaeger!.environment!.COLLECTOR_OTLP_ENABLED).toBe("true");
    expect(compose.services.jaeger!.ports).toContain("16686:16686");
  });

  it("gives in-flight work longer than JETFN_SHUTDOWN_TIMEOUT before a SIGKILL", () => {
    const jetfn = compose.services.jetfn!;
    const shutdown = loadEnv({ JETFN_SHUTDOWN_TIMEOUT: jetfn.environment!.JETFN_SHUTDOWN_TIMEOUT }).shutdownTimeoutMs;
    expect(Number.parseInt(jetfn.stop_grace_period!, 10) * 1000).toBeGreaterThan(shutdown);
  });

  it("mounts the Prometheus config that scrapes jetfn:8080 and loads the alert rules", () => {
    const folder = mounts("prometheus").find((m) => m.target === "/etc/prometheus")!.source;
    const prometheus = parse(readFileSync(path.join(folder, "prometheus.yml"), "utf8")) as {
      rule_files: string[];
      scrape_configs: { static_configs: { targets: string[] }[] }[];
    };
    expect(prometheus.scrape_configs.flatMap((c) => c.static_configs.flatMap((s) => s.targets))).toContain(`jetfn:${defaults.httpPort}`);
    for (const rules of prometheus.rule_files) expect(existsSync(path.join(folder, rules)), rules).toBe(true);
    expect(prometheus.rule_files).toContain("alerts.yml");
  });

  describe("grafana", () => {
    const provisioning = mounts("grafana").find((m) => m.target === "/etc/grafana/provisioning")!.source;
    const yamlIn = (folder: string) =>
      readdirSync(path.join(provisioning, folder)).map(
        (file) => parse(readFileSync(path.join(provisioning, folder, file), "utf8")) as Record<string, any>,
      );

    it("provisions the dashboard file the repository ships", () => {
      const providers = yamlIn("dashboards").flatMap((d) => d.providers as { type: string; options: { path: string } }[]);
      const dashboards = mounts("grafana").filter((m) =>
        providers.some((p) => p.type === "file" && path.posix.dirname(m.target) === p.options.path),
      );
      expect(dashboards.map((m) => path.relative(deploy(), m.source))).toEqual([path.join("grafana", "jetfn.json")]);
      expect(existsSync(dashboards[0]!.source)).toBe(true);
    });

    it("provisions the data source the dashboard's datasource variable selects: compose's Prometheus", () => {
      const dashboard = JSON.parse(readFileSync(deploy("grafana", "jetfn.json"), "utf8")) as {
        templating: { list: { name: string; type: string; query: string }[] };
      };
      const variable = dashboard.templating.list.find((v) => v.type === "datasource")!;
      // The variable lists data sources of its type; with exactly one, the default, it resolves to it.
      const sources = yamlIn("datasources").flatMap((d) => d.datasources as { type: string; url: string; isDefault?: boolean }[]);
      const matching = sources.filter((s) => s.type === variable.query);
      expect(matching).toHaveLength(1);
      expect(matching[0]!.isDefault).toBe(true);
      const url = new URL(matching[0]!.url);
      expect(compose.services[url.hostname]?.ports).toContain(`${url.port}:${url.port}`);
      expect(compose.services[url.hostname]?.image).toMatch(/^prom\/prometheus:/);
    });
  });
});

describe("Dockerfile", () => {
  const stages = parseDockerfile(path.join(REPO_ROOT, "Dockerfile"));
  const image = stages.at(-1)!;
  const workdirs = stages.map((s) => s.instructions.find((i) => i.op === "WORKDIR")?.args);

  it("bundles in a build stage with the WORKDIR the image runs in, and copies the bundles into the image", () => {
    expect(stages).toHaveLength(2);
    expect(stages[0]!.name).toBe("build");
    expect(new Set(workdirs).size).toBe(1);
    expect(stages[0]!.instructions.some((i) => i.op === "RUN" && i.args === "node bin/jetfn.js build")).toBe(true);
    expect(image.instructions.some((i) => i.op === "COPY" && i.args.startsWith(`--from=build ${workdirs[0]}/.jetfn `))).toBe(true);
  });

  it("exposes the HTTP and ingress ports, and its HEALTHCHECK calls /healthz on JETFN_HTTP_PORT", () => {
    expect(exposedPorts(image)).toEqual([defaults.httpPort, ingressPort]);
    const check = healthcheck(image)!;
    expect(check.command[0]).toBe("node");
    expect(check.command.join(" ")).toContain(`'http://127.0.0.1:'+(process.env.JETFN_HTTP_PORT||${defaults.httpPort})+'/healthz'`);
  });

  it("runs node itself as PID 1 (exec form), as user node", () => {
    const cmd = image.instructions.findLast((i) => i.op === "CMD")!;
    expect(execForm(cmd.args).slice(0, 2)).toEqual(["node", "bin/jetfn.js"]);
    expect(image.instructions.findLast((i) => i.op === "USER")?.args).toBe("node");
  });
});

describe("deploy/kubernetes", () => {
  const docs = parseAllDocuments(readFileSync(deploy("kubernetes", "jetfn.yaml"), "utf8")).map((d) => d.toJS() as Record<string, any>);
  const deployment = docs.find((d) => d.kind === "Deployment")!;
  const service = docs.find((d) => d.kind === "Service" && d.metadata.name === "jetfn")!;
  const services = docs.filter((d) => d.kind === "Service");
  const pdb = docs.find((d) => d.kind === "PodDisruptionBudget")!;
  const container = deployment.spec.template.spec.containers[0] as Container;
  const keda = parse(readFileSync(deploy("kubernetes", "keda.yaml"), "utf8")) as Record<string, any>;

  it("probes the paths the host serves, on its port", () => {
    expect(container.readinessProbe.httpGet.path).toBe("/readyz");
    expect(container.livenessProbe.httpGet.path).toBe("/healthz");
    expect(container.ports.find((p) => p.name === container.readinessProbe.httpGet.port)?.containerPort).toBe(defaults.httpPort);
    expect(service.metadata.annotations["prometheus.io/path"]).toBe("/metrics");
  });

  it("has a Service for the ingress port, and every Service selects the pods and targets a named container port", () => {
    const ingress = services
      .flatMap((s) => s.spec.ports as { name: string; port: number; targetPort: string }[])
      .find((p) => p.name === "ingress")!;
    expect(ingress.port).toBe(ingressPort);
    expect(container.ports.find((p) => p.name === ingress.targetPort)?.containerPort).toBe(ingressPort);
    for (const s of services) {
      expect(s.spec.selector, s.metadata.name).toEqual(deployment.spec.template.metadata.labels);
      for (const port of s.spec.ports)
        expect(
          container.ports.map((p) => p.name),
          s.metadata.name,
        ).toContain(port.targetPort);
    }
  });

  it("has a PodDisruptionBudget over the Deployment's pods that lets one go at a time", () => {
    expect(pdb.apiVersion).toBe("policy/v1");
    expect(pdb.spec.selector.matchLabels).toEqual(deployment.spec.selector.matchLabels);
    expect(deployment.spec.template.metadata.labels).toMatchObject(pdb.spec.selector.matchLabels);
    expect(pdb.spec.maxUnavailable ?? deployment.spec.replicas - pdb.spec.minAvailable).toBe(1);
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
