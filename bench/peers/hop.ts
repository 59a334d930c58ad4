/** The hop-by-hop header fields (RFC 9110 §7.6.1) the Node peer proxies drop both ways. */
export const HOP_BY_HOP: ReadonlySet<string> = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
]);
