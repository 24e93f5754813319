// A windowed list of fixed-height rows: only the rows in view (plus a margin) are in the DOM, so a list of
// 100,000 rows scrolls like one of 50. Written here (30 lines) rather than pulling a library for it.
import type { ComponentChildren } from "preact";
import { useState } from "preact/hooks";

interface Props<T> {
  items: T[];
  rowHeight: number;
  height: number;
  render: (item: T, index: number) => ComponentChildren;
  label: string;
  onEnd?: () => void;
}

const OVERSCAN = 8;

/** The rows [first, last) to render of `count` fixed-height rows scrolled to `top`, with `overscan` around. */
export function rowWindow(top: number, height: number, rowHeight: number, count: number, overscan = OVERSCAN) {
  const first = Math.max(0, Math.floor(top / rowHeight) - overscan);
  const last = Math.min(count, Math.ceil((top + height) / rowHeight) + overscan);
  return { first, last };
}

export function VirtualList<T>({ items, rowHeight, height, render, label, onEnd }: Props<T>) {
  const [top, setTop] = useState(0);
  const { first, last } = rowWindow(top, height, rowHeight, items.length);
  const onScroll = (event: Event) => {
    const el = event.currentTarget as HTMLElement;
    setTop(el.scrollTop);
    if (onEnd && el.scrollTop + el.clientHeight >= el.scrollHeight - rowHeight * 4) onEnd();
  };
  return (
    <div class="vlist" style={{ maxHeight: `${height}px` }} onScroll={onScroll} role="list" aria-label={label} tabIndex={0}>
      <div style={{ height: `${items.length * rowHeight}px`, position: "relative" }}>
        <div style={{ transform: `translateY(${first * rowHeight}px)` }}>
          {items.slice(first, last).map((item, i) => render(item, first + i))}
        </div>
      </div>
    </div>
  );
}
