/**
 * Names a user chooses (pools, routes) and the maps keyed by them (issue 15, item 3). A pool
 * may be called `constructor`, `toString` or `__proto__`: a plain `{}` answers those keys from
 * Object.prototype (a lookup finds a function), so every record keyed by user input is made with
 * `dict()` and read with `own()`.
 */

/**
 * The one pattern of pool and route names: the config schema and the admin API's share it.
 * `__proto__` is the one name refused: a YAML or JSON reader that builds plain objects turns
 * that key into the object's prototype, so it could not mean the same pool everywhere.
 */
export const NAME_PATTERN = '^(?!__proto__$)[A-Za-z0-9._-]+$';
export const NAME = new RegExp(NAME_PATTERN);

/** A record with no prototype: every key, `__proto__` included, is an ordinary own key. */
export function dict<T>(entries: Iterable<readonly [string, T]> = []): Record<string, T> {
  const out = Object.create(null) as Record<string, T>;
  for (const [k, v] of entries) out[k] = v;
  return out;
}

/** `rec[key]` only when it is the record's own key, never an inherited one. */
export function own<T>(rec: Readonly<Record<string, T>> | undefined, key: string): T | undefined {
  return rec !== undefined && Object.hasOwn(rec, key) ? rec[key] : undefined;
}
