/**
 * One line describing anything a handler may throw (an Error, a string, undefined),
 * safe for a NATS header value and a log field.
 */
export function errorMessage(error: unknown): string {
  let text: string;
  // Reading a thrown value can throw itself (a getter, a proxy, a toString that throws).
  try {
    if (error instanceof Error || (typeof error === "object" && error !== null && "message" in error)) {
      const { name, message } = error as { name?: unknown; message?: unknown };
      text = typeof name === "string" && name !== "Error" ? `${name}: ${String(message)}` : String(message);
    } else {
      text = typeof error === "string" ? error : `non-error thrown: ${String(error)}`;
    }
  } catch {
    text = error instanceof Error ? "an error whose message cannot be read" : "non-error thrown";
  }
  const oneLine = text.replace(/[\r\n\t]+/g, " ").trim();
  return oneLine.length > 1000 ? `${oneLine.slice(0, 997)}...` : oneLine || "unknown error";
}
