/**
 * Credentials for auth tests: a throwaway CA with server and client certificates (made with
 * `openssl`), and an operator/account/user JWT chain with a `.creds` file (made with
 * `@nats-io/jwt`), each with the nats-server config that requires it.
 */
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { createAccount, createOperator, createUser, encodeAccount, encodeOperator, encodeUser, fmtCreds } from "@nats-io/jwt";

/** A temporary folder, removed by the returned `remove()`. */
export function tempDir(prefix: string): { dir: string; remove: () => void } {
  const dir = mkdtempSync(path.join(tmpdir(), prefix));
  return { dir, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

export interface TlsFiles {
  readonly ca: string;
  readonly serverCert: string;
  readonly serverKey: string;
  readonly clientCert: string;
  readonly clientKey: string;
  /** `tls { ... verify: true }`: the server requires a client certificate signed by the CA. */
  readonly serverConfig: string;
}

function openssl(dir: string, args: string[]): void {
  try {
    execFileSync("openssl", args, { cwd: dir, stdio: ["ignore", "ignore", "pipe"] });
  } catch (error) {
    const stderr = (error as { stderr?: Buffer }).stderr?.toString() ?? "";
    throw new Error(`openssl ${args.join(" ")} failed: ${(error as Error).message}\n${stderr}`, { cause: error });
  }
}

/**
 * A CA (P-256), a server certificate for 127.0.0.1 and localhost, and a client certificate,
 * all valid for a day, written to `dir`.
 */
export function makeTlsFiles(dir: string): TlsFiles {
  const key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
  openssl(dir, ["req", "-x509", ...key, "-keyout", "ca.key", "-out", "ca.pem", "-days", "1", "-subj", "/CN=jetfn test CA"]);
  const leaf = (name: string, cn: string, extensions: string): void => {
    writeFileSync(path.join(dir, `${name}.ext`), extensions);
    openssl(dir, ["req", ...key, "-keyout", `${name}.key`, "-out", `${name}.csr`, "-subj", `/CN=${cn}`]);
    openssl(dir, [
      "x509",
      "-req",
      "-in",
      `${name}.csr`,
      "-CA",
      "ca.pem",
      "-CAkey",
      "ca.key",
      "-CAcreateserial",
      "-out",
      `${name}.pem`,
      "-days",
      "1",
      "-extfile",
      `${name}.ext`,
    ]);
  };
  leaf(
    "server",
    "localhost",
    "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n",
  );
  leaf("client", "jetfn-client", "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=clientAuth\n");
  const file = (name: string): string => path.join(dir, name);
  return {
    ca: file("ca.pem"),
    serverCert: file("server.pem"),
    serverKey: file("server.key"),
    clientCert: file("client.pem"),
    clientKey: file("client.key"),
    serverConfig: `tls {
  cert_file: ${JSON.stringify(file("server.pem"))}
  key_file: ${JSON.stringify(file("server.key"))}
  ca_file: ${JSON.stringify(file("ca.pem"))}
  verify: true
  timeout: 2
}
`,
  };
}

export interface OperatorCreds {
  /** The user's `.creds` file (user JWT and seed). */
  readonly credsFile: string;
  /** Operator mode, a memory resolver preloaded with the system account and a JetStream-enabled account. */
  readonly serverConfig: string;
}

/**
 * Operator mode on nats-server 2.9: an operator, a system account (JetStream refuses to
 * start without one), an application account with unlimited JetStream, and one user of it
 * whose `.creds` file is written to `dir`.
 */
export async function makeOperatorCreds(dir: string): Promise<OperatorCreds> {
  const operator = createOperator();
  const system = createAccount();
  const account = createAccount();
  const user = createUser();
  const operatorJwt = await encodeOperator("jetfn-test", operator, { system_account: system.getPublicKey() });
  const systemJwt = await encodeAccount("SYS", system, {}, { signer: operator });
  const accountJwt = await encodeAccount(
    "APP",
    account,
    {
      limits: {
        subs: -1,
        data: -1,
        payload: -1,
        imports: -1,
        exports: -1,
        wildcards: true,
        conn: -1,
        leaf: -1,
        mem_storage: -1,
        disk_storage: -1,
        streams: -1,
        consumer: -1,
      },
    },
    { signer: operator },
  );
  const userJwt = await encodeUser("jetfn", user, account);
  const credsFile = path.join(dir, "jetfn.creds");
  writeFileSync(credsFile, fmtCreds(userJwt, user), { mode: 0o600 });
  return {
    credsFile,
    serverConfig: `operator: ${operatorJwt}
system_account: ${system.getPublicKey()}
resolver: MEMORY
resolver_preload: {
  ${system.getPublicKey()}: ${systemJwt}
  ${account.getPublicKey()}: ${accountJwt}
}
`,
  };
}
