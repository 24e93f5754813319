// A uPlot chart as a Preact component: built when its data changes, resized with its box, destroyed on unmount.
import { useEffect, useRef } from "preact/hooks";
import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";

export const PALETTE = ["#1f5fa8", "#1d7a3a", "#b3261e", "#8a5a00", "#6b3fa0", "#0f7c80", "#a83f72", "#4d5560"];

/** Seconds since the epoch, as uPlot's time axis wants them. */
export const seconds = (iso: string) => new Date(iso).getTime() / 1000;

export function Plot({ options, data, label, height = 260 }: {
  options: Omit<uPlot.Options, "width" | "height">;
  data: uPlot.AlignedData;
  label: string;
  height?: number;
}) {
  const box = useRef<HTMLDivElement>(null);
  useEffect(() => {
    const element = box.current;
    if (!element) return;
    const width = () => Math.max(320, element.clientWidth || 900);
    const plot = new uPlot({ ...options, width: width(), height }, data, element);
    const observer = new ResizeObserver(() => plot.setSize({ width: width(), height }));
    observer.observe(element);
    return () => { observer.disconnect(); plot.destroy(); };
  }, [options, data, height]);
  return <div class="plot" ref={box} role="img" aria-label={label} />;
}

/** uPlot's bar path builder (one instance shared by the bar charts). */
export const bars = uPlot.paths.bars ? uPlot.paths.bars({ size: [0.8, 40] }) : undefined;
