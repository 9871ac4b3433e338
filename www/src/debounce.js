// An editor's sync after a pause in typing: both example editors (classes, conversations) make
// what is typed the data this way.

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
