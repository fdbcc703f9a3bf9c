/** A handler that did not bundle or load: syntax error, missing import, bad export, and the like. */
export class BundleError extends Error {
  override readonly name = "BundleError";
}
