import type { DeadLetterDetail } from "../nats/dead-letters.ts";

/** The body parsed as JSON (strict UTF-8), or undefined when it is not JSON. */
export function parseJsonBody(data: Uint8Array): { value: unknown } | undefined {
  try {
    return { value: JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(data)) as unknown };
  } catch {
    return undefined;
  }
}

/**
 * Bytes as `xxd` shows them: per 16 bytes, the offset, the bytes in hex in groups of two,
 * and the printable ASCII ones (`.` for the rest). No trailing newline; "" for no bytes.
 */
export function hexDump(data: Uint8Array): string {
  const lines: string[] = [];
  for (let offset = 0; offset < data.length; offset += 16) {
    const row = data.subarray(offset, offset + 16);
    let hex = "";
    let ascii = "";
    row.forEach((byte, i) => {
      hex += byte.toString(16).padStart(2, "0") + (i % 2 === 1 ? " " : "");
      ascii += byte >= 0x20 && byte <= 0x7e ? String.fromCharCode(byte) : ".";
    });
    lines.push(`${offset.toString(16).padStart(8, "0")}: ${hex.padEnd(40)} ${ascii}`);
  }
  return lines.join("\n");
}

/** `jetfn dlq show`'s text: what failed and why, where it came from, every header, the body. */
export function renderDeadLetter(letter: DeadLetterDetail): string {
  const json = parseJsonBody(letter.data);
  const lines = [
    `dead letter ${letter.dlqStream}#${letter.dlqSeq} of ${letter.function}`,
    `  failure     ${letter.reason || "(no Jetfn-Reason)"}: ${letter.error || "(no Jetfn-Error)"}`,
    `  original    ${letter.subject || "(no Jetfn-Subject)"}, stream ${letter.stream || "?"} seq ${letter.streamSeq || "?"}`,
    `  deliveries  ${letter.deliveries || "?"}`,
    `  failed at   ${letter.failedAt || "(no Jetfn-Failed-At)"}`,
    `  stored at   ${letter.storedAt}`,
    `headers`,
    ...letter.headers.map(([name, value]) => `  ${name}: ${value}`),
  ];
  const size = `${letter.data.length} byte${letter.data.length === 1 ? "" : "s"}`;
  if (letter.data.length === 0) lines.push(`body: empty`);
  else if (json) lines.push(`body: ${size}, JSON (pretty-printed)`, JSON.stringify(json.value, null, 2));
  else lines.push(`body: ${size}, not JSON (hex)`, hexDump(letter.data));
  return lines.join("\n");
}

/**
 * `jetfn dlq show --json`'s object: the fields of `dlq list --json`, `storedAt`, `headers`
 * (each name with all its values), `body` (base64, the exact bytes) and `json` (the body
 * parsed, present only when it is JSON).
 */
export function deadLetterJson(letter: DeadLetterDetail): Record<string, unknown> {
  const { headers, data, ...fields } = letter;
  const byName = Object.create(null) as Record<string, string[]>;
  for (const [name, value] of headers) (byName[name] ??= []).push(value);
  const json = parseJsonBody(data);
  return { ...fields, headers: byName, body: Buffer.from(data).toString("base64"), ...(json ? { json: json.value } : {}) };
}
