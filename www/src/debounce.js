// Timing of the page's work: an editor's sync after a pause in typing (both example editors make
// what is typed the data this way), and tasks run one after the other.

/** `sync` run `ms` after the last `soon()`; `cancel()` drops a pending run; `flush()` runs a pending one now. */
export function debounced(sync) {
  let pending = null;
  return {
    soon(ms = 400) {
      clearTimeout(pending);
      pending = setTimeout(() => {
        pending = null;
        sync();
      }, ms);
    },
    cancel() {
      clearTimeout(pending);
      pending = null;
    },
    async flush() {
      if (pending === null) return;
      clearTimeout(pending);
      pending = null;
      await sync();
    },
  };
}

/** A queue: `run(fn)` calls `fn` after every task queued before it has settled; it returns `fn`'s promise. */
export function oneAtATime() {
  let last = Promise.resolve();
  const run = (fn) => {
    const p = last.then(fn);
    last = p.catch(() => {});
    return p;
  };
  // Settles once everything queued so far has.
  run.idle = () => last;
  return run;
}
