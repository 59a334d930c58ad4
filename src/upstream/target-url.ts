/**
 * What a target URL may be, for the config file and the admin API alike (issue 15, item 14):
 * the one check, so a target the file refuses cannot come in through the API and the reverse.
 * An http(s) origin with an optional path prefix: no query, fragment or credentials, a real
 * port (not 0), a host name of at most 253 characters, the whole URL at most 2048.
 */

export const TARGET_URL_MAX = 2048;
const HOST_MAX = 253;

export function isTargetUrl(s: string): boolean {
  if (typeof s !== 'string' || s.length > TARGET_URL_MAX) return false;
  try {
    const u = new URL(s);
    return (
      (u.protocol === 'http:' || u.protocol === 'https:') &&
      !u.search &&
      !u.hash &&
      !u.username &&
      !u.password &&
      u.port !== '0' &&
      u.hostname.length > 0 &&
      u.hostname.length <= HOST_MAX
    );
  } catch {
    return false;
  }
}
