import uPlot from "uplot";
import type { ChartSeries } from "../view.ts";
import { h } from "./dom.ts";

const WIDTH = 140;
const HEIGHT = 36;

/**
 * A small chart of one function's history (uPlot, no axes or legend): its successes and
 * failures per bucket, or its p99. The figures it draws are also in its accessible name.
 */
export class Sparkline {
  /** The chart: an image whose accessible name says what it draws. */
  readonly element: HTMLElement;
  /** The chart with its caption, to put in the page. */
  readonly figure: HTMLElement;
  readonly #plot: uPlot;
  readonly #kind: "throughput" | "p99";

  constructor(kind: "throughput" | "p99") {
    this.#kind = kind;
    this.element = h("div", { class: `spark ${kind}`, role: "img", "aria-label": "no data yet" });
    this.figure = h(
      "div",
      { class: "spark-figure" },
      h("span", { class: "spark-label", "aria-hidden": "true" }, kind === "throughput" ? "ok / failed per 10 s" : "p99"),
      this.element,
    );
    const series: uPlot.Series[] =
      kind === "throughput"
        ? [{}, { stroke: "#1a7f37", width: 1.5, fill: "rgba(26,127,55,0.12)" }, { stroke: "#cf222e", width: 1.5 }]
        : [{}, { stroke: "#8250df", width: 1.5, spanGaps: true, points: { show: true, size: 4, fill: "#8250df" } }];
    this.#plot = new uPlot(
      {
        width: WIDTH,
        height: HEIGHT,
        pxAlign: false,
        cursor: { show: false },
        legend: { show: false },
        select: { show: false, left: 0, top: 0, width: 0, height: 0 },
        axes: [{ show: false }, { show: false }],
        scales: { x: { time: false }, y: { range: (_u, _min, max) => [0, Math.max(1, max)] } },
        series,
      },
      kind === "throughput" ? [[], [], []] : [[], []],
      this.element,
    );
  }

  update(chart: ChartSeries, stepMs: number): void {
    const x = chart.t.map((t) => t / 1000);
    if (this.#kind === "throughput") {
      this.#plot.setData([x, [...chart.successes], [...chart.failures]]);
      const ok = chart.successes.reduce((a, b) => a + b, 0);
      const failed = chart.failures.reduce((a, b) => a + b, 0);
      this.element.setAttribute("aria-label", `last ${minutes(chart, stepMs)} min: ${ok} succeeded, ${failed} failed`);
    } else {
      this.#plot.setData([x, chart.p99Ms.map((v) => v)]);
      const values = chart.p99Ms.filter((v): v is number => v !== null);
      this.element.setAttribute(
        "aria-label",
        values.length > 0 ? `p99 over the last ${minutes(chart, stepMs)} min, highest ${Math.max(...values)} ms` : "no invocations",
      );
    }
  }
}

function minutes(chart: ChartSeries, stepMs: number): number {
  return Math.round((chart.t.length * stepMs) / 60_000);
}
