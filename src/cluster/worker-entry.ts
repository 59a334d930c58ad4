/**
 * A worker process's first module. The primary coordinates shutdown and reload, so signals
 * sent to the whole process group (systemd's default KillMode=control-group, Ctrl-C in a
 * terminal) are ignored here so that the primary's grace period is the one that counts, and
 * SIGHUP (reload) is the primary's too. They are ignored from the first moment: worker.ts and
 * its imports take a while to load, and a signal's default action then would kill the worker
 * outright. Only then is the worker itself loaded.
 */
for (const signal of ['SIGTERM', 'SIGINT', 'SIGHUP'] as const) process.on(signal, () => {});
// Before any request: V8's allocation-site pretenuring off (lib/gc.ts).
(await import('../lib/gc.ts')).tuneGc();
await import('./worker.ts');
