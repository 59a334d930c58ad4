/**
 * Layer7Router's live figures (issue 17, item 4): sessions per second, sessions in total and
 * open now, bytes each way and KB/s each way. Read from the summed metrics (every worker and the
 * primary, as `/metrics` shows them), so the log line, the dashboard and Prometheus agree.
 * A session is a downstream connection; the bytes are those of `manifold_bytes_total`.
 */
import type { Logger } from './logger.ts';

/** Cumulative figures at one moment. */
export interface LiveTotals {
  /** Downstream connections accepted since start. */
  sessions: number;
  /** Open now. */
  open: number;
  /** Bytes read from downstreams / written to them, since start. */
  bytesIn: number;
  bytesOut: number;
}

interface Family {
  name: string;
  values: ReadonlyArray<{ value: number; labels: Partial<Record<string, string | number>> }>;
}

/** The live totals in a metrics JSON snapshot (prom-client's `getMetricsAsJSON()` shape). */
export function liveTotals(metrics: readonly Family[]): LiveTotals {
  const out: LiveTotals = { sessions: 0, open: 0, bytesIn: 0, bytesOut: 0 };
  for (const m of metrics) {
    if (m.name === 'manifold_connections_accepted_total') for (const v of m.values) out.sessions += v.value;
    else if (m.name === 'manifold_connections_open') for (const v of m.values) out.open += v.value;
    else if (m.name === 'manifold_bytes_total')
      for (const v of m.values) {
        if (v.labels.direction === 'in') out.bytesIn += v.value;
        else if (v.labels.direction === 'out') out.bytesOut += v.value;
      }
  }
  return out;
}

/** KB in the line and on the dashboard: 1024 bytes, as Layer7Router counts. */
const KB = 1024;

/** The line's fields between two readings `seconds` apart. */
export function liveFields(prev: LiveTotals, cur: LiveTotals, seconds: number): Record<string, number> {
  const rate = (a: number, b: number, unit = 1) =>
    seconds > 0 ? Math.round((Math.max(0, b - a) / unit / seconds) * 10) / 10 : 0;
  return {
    sessions_per_s: rate(prev.sessions, cur.sessions),
    sessions_total: cur.sessions,
    sessions_current: cur.open,
    bytes_in: cur.bytesIn,
    bytes_out: cur.bytesOut,
    kb_in_per_s: rate(prev.bytesIn, cur.bytesIn, KB),
    kb_out_per_s: rate(prev.bytesOut, cur.bytesOut, KB),
  };
}

export function liveText(f: Record<string, number>): string {
  return (
    `${f.sessions_per_s} sessions/s, ${f.sessions_total} total, ${f.sessions_current} current, ` +
    `in ${f.bytes_in} B (${f.kb_in_per_s} KB/s), out ${f.bytes_out} B (${f.kb_out_per_s} KB/s)`
  );
}

/**
 * `--stats-interval`: logs the live line every `intervalMs` (info, `msg` the line, the figures
 * as fields). `read` sums every process; a reading that fails is skipped. Returns its stop.
 */
export function startLiveLine(read: () => Promise<LiveTotals>, log: Logger, intervalMs: number): () => void {
  let prev: LiveTotals | null = null;
  let at = performance.now();
  let busy = false;
  const tick = async () => {
    if (busy) return;
    busy = true;
    try {
      const cur = await read();
      const now = performance.now();
      const fields = liveFields(prev ?? { sessions: 0, open: 0, bytesIn: 0, bytesOut: 0 }, cur, (now - at) / 1000);
      prev = cur;
      at = now;
      log.info({ live: fields }, liveText(fields));
    } catch (err) {
      log.debug({ err }, 'live line: could not read the metrics');
    } finally {
      busy = false;
    }
  };
  const timer = setInterval(() => void tick(), intervalMs);
  timer.unref();
  return () => clearInterval(timer);
}
