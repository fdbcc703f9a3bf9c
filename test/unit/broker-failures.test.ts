import { JetStreamApiError } from "@nats-io/jetstream";
import { ClosedConnectionError, InvalidArgumentError, NoRespondersError, RequestError, TimeoutError } from "@nats-io/transport-node";
import { expect, it } from "vitest";
import { brokerFailureOf, isJetStreamUnavailable, StreamElecting } from "../../runtime/nats/broker-failures.ts";

const apiError = (err_code: number, description: string) =>
  new JetStreamApiError({ code: err_code === 10054 ? 400 : 503, err_code, description });

it("reads the client's typed errors: the broker's failures, and the message's own", () => {
  // What nats-server 2.9 answers a publish when max_file_store is reached, and a stream with discard: new when full.
  expect(brokerFailureOf(apiError(10023, "insufficient resources"), true)).toBe("storage-full");
  expect(brokerFailureOf(apiError(10077, "maximum messages exceeded"), true)).toBe("storage-full");
  expect(brokerFailureOf(apiError(10047, "insufficient storage resources available"), true)).toBe("storage-full");
  expect(brokerFailureOf(apiError(10008, "jetstream cluster not available"), true)).toBe("refused");
  // No stream behind the subject: the JetStream client wraps the no-responders RequestError.
  const noResponders = new Error("jetstream is not enabled", { cause: new RequestError("503", { cause: new NoRespondersError("out.x") }) });
  expect(brokerFailureOf(noResponders, true)).toBe("no-responders");
  expect(brokerFailureOf(new TimeoutError(), true)).toBe("timeout");
  expect(brokerFailureOf(new TimeoutError(), false)).toBe("disconnected");
  expect(brokerFailureOf(new ClosedConnectionError(), true)).toBe("disconnected");
  expect(brokerFailureOf(new Error("something else"), true)).toBe("refused");
  // Too large for the stream or the server: no retry helps.
  expect(brokerFailureOf(apiError(10054, "message size exceeds maximum allowed"), true)).toBeUndefined();
  expect(brokerFailureOf(InvalidArgumentError.format("payload", "max_payload size exceeded"), true)).toBeUndefined();
});

it("tells JetStream that cannot answer for now (an election: start-up waits) from a refusal or a server without it", () => {
  expect(isJetStreamUnavailable(apiError(10008, "JetStream system temporarily unavailable"))).toBe(true);
  expect(isJetStreamUnavailable(new Error("stream X: timeout", { cause: new TimeoutError() }))).toBe(true);
  expect(isJetStreamUnavailable(apiError(10059, "stream not found"))).toBe(false);
  // Unless it is a stream jetfn has just made (an ordered function's copies): then it is an election.
  const electing = new Error("creating consumer", {
    cause: new StreamElecting("stream not found", { cause: apiError(10059, "stream not found") }),
  });
  expect(isJetStreamUnavailable(electing)).toBe(true);
  const noResponders = new Error("jetstream is not enabled", {
    cause: new RequestError("503", { cause: new NoRespondersError("$JS.API.INFO") }),
  });
  expect(isJetStreamUnavailable(noResponders)).toBe(false);
  expect(isJetStreamUnavailable(new Error("something else"))).toBe(false);
});
