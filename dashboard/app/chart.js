// Time-series charts on uPlot (vendor/uplot-*/uPlot.iife.min.js, loaded by
// index.html as window.uPlot). A chart is a canvas, so each one also gets
// an aria-label that sums it up; the numbers are in the tiles and tables
// beside it.

import { h } from './dom.js';

const palette = ['--c1', '--c2', '--c3', '--c4', '--c5', '--c6', '--c7'];

// cssColor resolves a custom property to a colour the canvas can use
// (light-dark() is resolved by the browser only on a real property).
function cssColor(name) {
  const probe = h('span', { class: 'sr-only' });
  probe.style.color = `var(${name})`;
  document.body.append(probe);
  const c = getComputedStyle(probe).color;
  probe.remove();
  return c;
}

export function seriesColor(i) { return cssColor(palette[i % palette.length]); }

// Chart draws series over time in a box that follows its container's
// width and the theme.
//   title: shown above the plot
//   series: [{ label, fmt(n) -> string }]
//   yFmt: formats the axis ticks
export class Chart {
  constructor({ title, series, yFmt = String, height = 200, bars = false, integer = false, dots = false }) {
    this.opts = { title, series, yFmt, height, bars, integer, dots };
    this.plotEl = h('div', { class: 'plot', role: 'img', 'aria-label': title });
    this.el = h('figure', { class: 'chart' }, h('h3', {}, title), this.plotEl);
    this.data = null;
    this.u = null;
    this.resize = new ResizeObserver(() => this.fit());
    this.resize.observe(this.plotEl);
    this.onTheme = () => this.rebuild();
    document.addEventListener('themechange', this.onTheme);
  }

  // set replaces the data: [xs in Unix seconds, ys per series...].
  set(data, summary) {
    this.data = data;
    if (summary) this.plotEl.setAttribute('aria-label', `${this.opts.title}: ${summary}`);
    if (this.u) this.u.setData(data);
    else this.rebuild();
  }

  rebuild() {
    if (!this.data || !window.uPlot) return;
    if (this.u) this.u.destroy();
    const text = cssColor('--muted');
    const grid = cssColor('--grid');
    const axis = { stroke: text, grid: { stroke: grid, width: 1 }, ticks: { stroke: grid, width: 1 } };
    const { series, yFmt, height, bars, integer, dots } = this.opts;
    // The axis is as wide as its longest label ($0.0000075 needs room).
    const yAxis = {
      ...axis,
      values: (u, ticks) => ticks.map(yFmt),
      size: (u, values) => (values ? Math.max(...values.map((v) => v.length)) * 7.5 + 20 : 40),
    };
    // Counts step by whole numbers, so an axis never reads 0.5 requests.
    if (integer) yAxis.incrs = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1e3, 2e3, 5e3, 1e4, 2e4, 5e4, 1e5, 2e5, 5e5, 1e6, 2e6, 5e6, 1e7, 1e8, 1e9];
    const paths = bars && window.uPlot.paths.bars ? window.uPlot.paths.bars({ size: [0.7, 40] }) : undefined;
    this.u = new window.uPlot({
      width: Math.max(this.plotEl.clientWidth, 200),
      height,
      legend: { live: true },
      cursor: { drag: { x: false, y: false } },
      scales: { y: { range: (u, min, max) => [0, max > 0 ? max * 1.1 : 1] } },
      axes: [axis, yAxis],
      series: [{}, ...series.map((s, i) => {
        const color = seriesColor(s.color ?? i);
        return {
          label: s.label,
          stroke: color,
          fill: bars ? color : undefined,
          width: 2,
          paths,
          // Dots mark buckets that have a value, for series with gaps
          // (latency of minutes without requests), where a lone value
          // would otherwise draw no line at all.
          points: dots ? { show: true, size: 5, fill: color } : { show: false },
          value: (u, v) => (v === null || v === undefined ? '—' : (s.fmt || yFmt)(v)),
        };
      })],
    }, this.data, this.plotEl);
  }

  fit() {
    if (this.u && this.plotEl.clientWidth > 0) {
      this.u.setSize({ width: this.plotEl.clientWidth, height: this.opts.height });
    }
  }

  destroy() {
    this.resize.disconnect();
    document.removeEventListener('themechange', this.onTheme);
    if (this.u) this.u.destroy();
  }
}
