import fs from "node:fs";

/** True if `file` exists and is a regular file (or a link to one). */
export function isFile(file: string): boolean {
  try {
    return fs.statSync(file).isFile();
  } catch {
    return false;
  }
}
