/**
 * The chart bench/process.ts writes (bench/results/process.svg): hand-written SVG, no
 * dependency. Two panels:
 *
 * 1. Throughput ratio per drained-backlog scenario: one horizontal bar per row other than
 *    the reference, its msgs/s over the reference's (the careful hand-written worker) of
 *    the same run (1.0 = as fast), with the issue's target marked where there is one.
 * 2. Latency percentiles per rate (publish → output seen): per rate, one column per
 *    implementation, a bar up to p99 with p50 marked inside it and max above it, on a
 *    logarithmic axis in milliseconds.
 *
 * Every mark carries a `<title>` (a tooltip in a browser) with its exact figures.
 */

/** One bar of panel 1. */
export interface RatioBar {
  /** e.g. `noop · 1 KB` */
  readonly group: string;
  /** e.g. `none`, `worker, traced`, `naive hand-written` */
  readonly label: string;
  /** Picks the colour. */
  readonly series: string;
  /** Drawn lighter (tracing exported). */
  readonly light: boolean;
  readonly ratio: number;
  /** The issue's target for this row, if it has one. */
  readonly target?: number;
}

/** One column of panel 2. */
export interface LatencyColumn {
  /** e.g. `1,000/s · 1 KB` */
  readonly group: string;
  /** e.g. `hand-written`, `jetfn none` */
  readonly label: string;
  /** Picks the colour. */
  readonly series: string;
  readonly p50: number;
  readonly p99: number;
  readonly max: number;
}

export interface ChartInput {
  readonly title: string;
  /** What every ratio is taken against, e.g. "careful hand-written worker". */
  readonly reference: string;
  /** Whose targets the red marks are, e.g. "issue 21's target". */
  readonly targets: string;
  /** Shown in red under the title (e.g. "smoke run on a loaded machine"). */
  readonly warning?: string;
  /** Lines under the title: the run's conditions. */
  readonly subtitle: readonly string[];
  readonly ratios: readonly RatioBar[];
  readonly latency: readonly LatencyColumn[];
  /** Series in legend order, with their colours. */
  readonly series: readonly { readonly key: string; readonly name: string; readonly color: string }[];
}

const WIDTH = 980;
const FONT = 'font-family="system-ui, -apple-system, Segoe UI, Helvetica, Arial, sans-serif"';

function esc(text: string): string {
  return text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");
}

function num(value: number, digits: number): string {
  return value.toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

/** Splits `text` at spaces into lines of at most `width` characters (a longer word stays whole). */
function wrap(text: string, width: number): string[] {
  const lines: string[] = [];
  let line = "";
  for (const word of text.split(" ")) {
    if (line && line.length + 1 + word.length > width) {
      lines.push(line);
      line = word;
    } else {
      line = line ? `${line} ${word}` : word;
    }
  }
  if (line) lines.push(line);
  return lines;
}

function r(value: number): string {
  return (Math.round(value * 10) / 10).toString();
}

/** Panel 1 at `top`; returns its SVG and height. */
function ratioPanel(input: ChartInput, top: number, colors: Map<string, string>): { svg: string; height: number } {
  const out: string[] = [];
  const bars = input.ratios;
  const left = 250;
  const right = WIDTH - 60;
  const rowH = 18;
  const groupGap = 8;
  const groups = [...new Set(bars.map((b) => b.group))];
  const maxRatio = Math.max(1.1, ...bars.map((b) => b.ratio * 1.05), ...bars.map((b) => b.target ?? 0));
  const scaleMax = Math.ceil(maxRatio * 4) / 4;
  const x = (v: number): number => left + (v / scaleMax) * (right - left);
  out.push(
    `<text x="20" y="${top + 18}" font-size="15" font-weight="600">Drained backlog: msgs/s ÷ the ${esc(input.reference)}'s msgs/s (same run)</text>`,
  );
  let y = top + 40;
  const plotTop = y;
  const rows: string[] = [];
  for (const group of groups) {
    rows.push(`<text x="20" y="${r(y + 13)}" font-size="12" font-weight="600">${esc(group)}</text>`);
    for (const bar of bars.filter((b) => b.group === group)) {
      const color = colors.get(bar.series) ?? "#888";
      const tip = `${bar.group}, ${bar.label}: ${num(bar.ratio, 2)}${bar.target !== undefined ? ` (target ≥ ${num(bar.target, 2)})` : ""}`;
      rows.push(`<text x="${left - 8}" y="${r(y + 13)}" font-size="11" text-anchor="end">${esc(bar.label)}</text>`);
      rows.push(
        `<rect x="${left}" y="${r(y + 2)}" width="${r(Math.max(0.5, x(bar.ratio) - left))}" height="${rowH - 4}" fill="${color}"` +
          `${bar.light ? ` fill-opacity="0.45" stroke="${color}" stroke-width="1"` : ""}><title>${esc(tip)}</title></rect>`,
      );
      const labelX = Math.max(x(bar.ratio), bar.target !== undefined ? x(bar.target) : 0) + 4;
      rows.push(`<text x="${r(labelX)}" y="${r(y + 13)}" font-size="11">${num(bar.ratio, 2)}</text>`);
      if (bar.target !== undefined) {
        rows.push(
          `<line x1="${r(x(bar.target))}" x2="${r(x(bar.target))}" y1="${r(y)}" y2="${r(y + rowH)}" stroke="#c00" stroke-width="2">` +
            `<title>${esc(`target ≥ ${num(bar.target, 2)}`)}</title></line>`,
        );
      }
      y += rowH;
    }
    y += groupGap;
  }
  const plotBottom = y;
  // Grid first, bars over it.
  for (let v = 0; v <= scaleMax + 1e-9; v += 0.25) {
    const gx = r(x(v));
    out.push(
      `<line x1="${gx}" x2="${gx}" y1="${plotTop - 4}" y2="${plotBottom}" stroke="${Math.abs(v - 1) < 1e-9 ? "#333" : "#ddd"}"${Math.abs(v - 1) < 1e-9 ? ' stroke-dasharray="4 3"' : ""}/>`,
    );
    out.push(`<text x="${gx}" y="${plotBottom + 14}" font-size="10" text-anchor="middle" fill="#555">${num(v, 2)}</text>`);
  }
  out.push(`<text x="${r(x(1))}" y="${plotTop - 8}" font-size="10" text-anchor="middle" fill="#333">${esc(input.reference)} = 1.00</text>`);
  out.push(...rows);
  const legendY = plotBottom + 34;
  out.push(
    `<rect x="${left}" y="${legendY - 9}" width="14" height="10" fill="#777"/><text x="${left + 18}" y="${legendY}" font-size="11">tracing off</text>` +
      `<rect x="${left + 100}" y="${legendY - 9}" width="14" height="10" fill="#777" fill-opacity="0.45" stroke="#777"/><text x="${left + 118}" y="${legendY}" font-size="11">every span exported (OTLP/HTTP)</text>` +
      `<line x1="${left + 330}" x2="${left + 330}" y1="${legendY - 10}" y2="${legendY + 2}" stroke="#c00" stroke-width="2"/><text x="${left + 336}" y="${legendY}" font-size="11">${esc(input.targets)}</text>`,
  );
  return { svg: out.join("\n"), height: legendY + 16 - top };
}

/** Panel 2 at `top`; returns its SVG and height. */
function latencyPanel(input: ChartInput, top: number, colors: Map<string, string>): { svg: string; height: number } {
  const out: string[] = [];
  const columns = input.latency;
  const groups = [...new Set(columns.map((c) => c.group))];
  const left = 70;
  const right = WIDTH - 20;
  const plotTop = top + 40;
  const plotH = 260;
  const plotBottom = plotTop + plotH;
  const values = columns.flatMap((c) => [c.p50, c.p99, c.max]).filter((v) => v > 0);
  const lo = 10 ** Math.floor(Math.log10(Math.max(1e-3, Math.min(...values, 1))));
  const hi = 10 ** Math.ceil(Math.log10(Math.max(...values, 10)));
  const y = (v: number): number =>
    plotBottom - ((Math.log10(Math.max(v, lo)) - Math.log10(lo)) / (Math.log10(hi) - Math.log10(lo))) * plotH;
  out.push(
    `<text x="20" y="${top + 18}" font-size="15" font-weight="600">Fixed rate: publish → output seen, milliseconds (log scale)</text>`,
  );
  for (let v = lo; v <= hi * 1.0001; v *= 10) {
    for (const m of [1, 2, 5]) {
      const t = v * m;
      if (t > hi * 1.0001) break;
      const gy = r(y(t));
      out.push(`<line x1="${left}" x2="${right}" y1="${gy}" y2="${gy}" stroke="${m === 1 ? "#ccc" : "#eee"}"/>`);
      out.push(
        `<text x="${left - 6}" y="${r(y(t) + 3)}" font-size="10" text-anchor="end" fill="#555">${t >= 1 ? num(t, 0) : t.toString()}</text>`,
      );
    }
  }
  out.push(
    `<text x="16" y="${r(plotTop + plotH / 2)}" font-size="11" fill="#555" transform="rotate(-90 16 ${r(plotTop + plotH / 2)})" text-anchor="middle">ms</text>`,
  );
  const groupW = (right - left) / Math.max(1, groups.length);
  groups.forEach((group, gi) => {
    const inGroup = columns.filter((c) => c.group === group);
    const gx = left + gi * groupW;
    const colW = Math.min(44, (groupW - 20) / Math.max(1, inGroup.length));
    const start = gx + (groupW - colW * inGroup.length) / 2;
    out.push(
      `<text x="${r(gx + groupW / 2)}" y="${plotBottom + 18}" font-size="12" font-weight="600" text-anchor="middle">${esc(group)}</text>`,
    );
    if (gi > 0) out.push(`<line x1="${r(gx)}" x2="${r(gx)}" y1="${plotTop}" y2="${plotBottom + 24}" stroke="#bbb"/>`);
    inGroup.forEach((c, ci) => {
      const color = colors.get(c.series) ?? "#888";
      const cx = start + ci * colW;
      const w = colW - 8;
      const tip = `${c.group}, ${c.label}: p50 ${num(c.p50, 2)} ms, p99 ${num(c.p99, 2)} ms, max ${num(c.max, 2)} ms`;
      out.push(`<g><title>${esc(tip)}</title>`);
      out.push(
        `<rect x="${r(cx + 4)}" y="${r(y(c.p99))}" width="${r(w)}" height="${r(Math.max(0.5, plotBottom - y(c.p99)))}" fill="${color}"/>`,
      );
      out.push(`<line x1="${r(cx + 4)}" x2="${r(cx + 4 + w)}" y1="${r(y(c.p50))}" y2="${r(y(c.p50))}" stroke="#fff" stroke-width="2.5"/>`);
      out.push(
        `<line x1="${r(cx + 4 + w / 2)}" x2="${r(cx + 4 + w / 2)}" y1="${r(y(c.max))}" y2="${r(y(c.p99))}" stroke="${color}" stroke-width="1"/>`,
      );
      out.push(
        `<line x1="${r(cx + 4 + w / 4)}" x2="${r(cx + 4 + (3 * w) / 4)}" y1="${r(y(c.max))}" y2="${r(y(c.max))}" stroke="${color}" stroke-width="2"/>`,
      );
      out.push(
        `<text x="${r(cx + 4 + w / 2)}" y="${r(y(c.max) - 4)}" font-size="9" text-anchor="middle" fill="#333">${num(c.p99, c.p99 < 10 ? 1 : 0)}</text>`,
      );
      out.push("</g>");
    });
  });
  out.push(`<line x1="${left}" x2="${right}" y1="${plotBottom}" y2="${plotBottom}" stroke="#333"/>`);
  let lx = left;
  let legendY = plotBottom + 44;
  for (const s of input.series.filter((s) => columns.some((c) => c.series === s.key))) {
    const width = 30 + s.name.length * 6.2;
    // A legend wider than the plot goes on in a second line.
    if (lx > left && lx + width > right) {
      lx = left;
      legendY += 16;
    }
    out.push(
      `<rect x="${lx}" y="${legendY - 9}" width="14" height="10" fill="${s.color}"/><text x="${lx + 18}" y="${legendY}" font-size="11">${esc(s.name)}</text>`,
    );
    lx += width;
  }
  out.push(
    `<text x="${left}" y="${legendY + 18}" font-size="11" fill="#333">Bar: up to p99 (its value printed above the column). White line: p50. Thin line and tick above: max.</text>`,
  );
  return { svg: out.join("\n"), height: legendY + 28 - top };
}

/** The whole chart as an SVG document. */
export function renderChart(input: ChartInput): string {
  const colors = new Map(input.series.map((s) => [s.key, s.color]));
  const parts: string[] = [];
  let top = 20;
  parts.push(`<text x="20" y="${top + 8}" font-size="18" font-weight="700">${esc(input.title)}</text>`);
  top += 14;
  for (const line of input.warning ? wrap(input.warning, 110) : []) {
    top += 18;
    parts.push(`<text x="20" y="${top}" font-size="14" font-weight="700" fill="#c00">${esc(line)}</text>`);
  }
  for (const line of input.subtitle.flatMap((l) => wrap(l, 150))) {
    top += 16;
    parts.push(`<text x="20" y="${top}" font-size="12" fill="#444">${esc(line)}</text>`);
  }
  top += 14;
  if (input.ratios.length > 0) {
    const panel = ratioPanel(input, top, colors);
    parts.push(panel.svg);
    top += panel.height + 20;
  }
  if (input.latency.length > 0) {
    const panel = latencyPanel(input, top, colors);
    parts.push(panel.svg);
    top += panel.height + 10;
  }
  if (input.ratios.length === 0 && input.latency.length === 0) {
    parts.push(`<text x="20" y="${top + 20}" font-size="13">No drained-backlog or fixed-rate rows in this run.</text>`);
    top += 40;
  }
  const height = Math.ceil(top + 10);
  return (
    `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${height}" viewBox="0 0 ${WIDTH} ${height}" ${FONT}>\n` +
    `<rect width="100%" height="100%" fill="#fff"/>\n${parts.join("\n")}\n</svg>\n`
  );
}
