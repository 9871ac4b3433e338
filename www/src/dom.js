// Shared DOM helpers: finding elements by id, setting their text, drop zones for files, and downloads.

export const $ = (id) => document.getElementById(id);

export function setText(id, text) {
  $(id).textContent = text;
}

/** Makes `el` accept dropped files (folders are walked, subfolders included). */
export function dropZone(el, onFiles) {
  el.addEventListener("dragover", (e) => {
    e.preventDefault();
    el.classList.add("over");
  });
  el.addEventListener("dragleave", () => el.classList.remove("over"));
  el.addEventListener("drop", async (e) => {
    e.preventDefault();
    el.classList.remove("over");
    onFiles(await droppedFiles(e.dataTransfer));
  });
}

/** The files of a drop. The items are read before the first await: the browser empties them after the event. */
async function droppedFiles(transfer) {
  const entries = [...transfer.items].map((i) => i.webkitGetAsEntry?.()).filter(Boolean);
  if (!entries.length) return [...transfer.files];
  const files = [];
  for (const entry of entries) await walkEntry(entry, files);
  return files;
}

async function walkEntry(entry, files) {
  if (entry.isFile) files.push(await new Promise((ok, fail) => entry.file(ok, fail)));
  else if (entry.isDirectory) {
    const reader = entry.createReader();
    // readEntries hands out a folder's entries in batches until an empty one.
    for (;;) {
      const batch = await new Promise((ok, fail) => reader.readEntries(ok, fail));
      if (!batch.length) break;
      for (const c of batch) await walkEntry(c, files);
    }
  }
}

/** Hands a blob to the browser's downloads through a temporary link. */
export function saveAs(blob, name) {
  const a = Object.assign(document.createElement("a"), { href: URL.createObjectURL(blob), download: name });
  document.body.appendChild(a);
  a.click();
  a.remove();
  // Revoked later, not at once: the download may not have read the blob yet.
  setTimeout(() => URL.revokeObjectURL(a.href), 10_000);
}
