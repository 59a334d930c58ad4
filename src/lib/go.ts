/**
 * Go's own value grammars, for the seeds written in Go (balancing-reverse-proxy's flags,
 * asyncproxy's config and environment): one parser each, so both compat modes read `1m30s`
 * and `T` exactly as Go's `time.ParseDuration` and `strconv.ParseBool` do.
 */

const UNITS_NS: ReadonlyMap<string, number> = new Map([
  ['ns', 1],
  ['us', 1e3],
  ['µs', 1e3],
  ['μs', 1e3],
  ['ms', 1e6],
  ['s', 1e9],
  ['m', 6e10],
  ['h', 3.6e12],
]);

/** `time.ParseDuration`, in nanoseconds; null when it is not one (`5s`, `1m30s`, `1.5h`, `-2s`, `0`). */
export function parseGoDuration(text: string): number | null {
  let s = text;
  let sign = 1;
  if (s[0] === '-' || s[0] === '+') {
    sign = s[0] === '-' ? -1 : 1;
    s = s.slice(1);
  }
  if (s === '0') return 0;
  if (s === '') return null;
  let total = 0;
  while (s !== '') {
    const m = /^(\d*)(?:\.(\d*))?([^\d.]*)/.exec(s)!;
    const [all, int = '', frac, unit = ''] = m;
    const ns = UNITS_NS.get(unit);
    if ((int === '' && (frac ?? '') === '') || ns === undefined) return null;
    total += Number(`${int || '0'}.${frac ?? ''}0`) * ns;
    s = s.slice(all.length);
  }
  return sign * total;
}

const BOOLS: ReadonlyMap<string, boolean> = new Map([
  ['1', true],
  ['t', true],
  ['T', true],
  ['TRUE', true],
  ['true', true],
  ['True', true],
  ['0', false],
  ['f', false],
  ['F', false],
  ['FALSE', false],
  ['false', false],
  ['False', false],
]);

/** `strconv.ParseBool`; null when it is not one. */
export function parseGoBool(text: string): boolean | null {
  return BOOLS.get(text) ?? null;
}
