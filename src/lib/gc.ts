/**
 * One V8 setting for the data plane (issue 11 item 4): allocation-site pretenuring off.
 *
 * What was measured is the flag's effect (below); the mechanism is the likely one. V8 watches
 * how many objects of each allocation site survive a scavenge; a site whose objects mostly do
 * is "pretenured": from then on it allocates straight in the old generation. In the
 * first seconds of load, while the young generation is still growing from 1 MiB, nearly
 * everything survives, and a request-path site could be pretenured for good. A request's
 * objects made there then sit in the old generation pointing at the request's young objects,
 * which every scavenge must keep (old-to-new pointers are roots) and so promotes: the whole
 * request, every request, until the next full GC. Measured on the proxy bench, in about one
 * process in four: 10-12 MB promoted per scavenge instead of ~0.1 MB, 15 ms pauses (and 40 ms
 * of the GC threads' time) instead of 1 ms, p99 doubled, about a quarter less throughput per
 * core, and it never recovered (5 processes of 21). With pretenuring off, 0 of 19. Request
 * objects live for milliseconds: none of them should be pretenured, and the gateway's
 * long-lived objects are made at start, where pretenuring would not matter anyway.
 *
 * Set before any request is served, in the single process and in each cluster worker.
 * `node --allocation-site-pretenuring …` keeps V8's default.
 */
import { setFlagsFromString } from 'node:v8';

export function tuneGc(): void {
  if (process.execArgv.includes('--allocation-site-pretenuring')) return;
  setFlagsFromString('--no-allocation-site-pretenuring');
}
