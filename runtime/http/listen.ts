import type { Server } from "node:http";
import type { AddressInfo } from "node:net";

/** Starts `server` listening; resolves with its bound address, rejects if it cannot bind. */
export function listen(server: Server, host: string, port: number): Promise<AddressInfo> {
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => {
      server.off("error", reject);
      resolve(server.address() as AddressInfo);
    });
  });
}
