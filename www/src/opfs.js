// Files and folders in this browser's private storage (OPFS), for the checkpoint and the projects.

/** The folder `name` at the top of this site's OPFS (created with `create`; else a NotFoundError when there is none). */
export async function opfsDir(name, create = false) {
  const root = await navigator.storage.getDirectory();
  return root.getDirectoryHandle(name, { create });
}

/** Removes the folder `name` at the top of OPFS with everything in it (nothing when there is none). */
export async function removeOpfsDir(name) {
  const root = await navigator.storage.getDirectory();
  await root.removeEntry(name, { recursive: true }).catch((e) => {
    if (e?.name !== "NotFoundError") throw e;
  });
}

/** Writes `data` (a string, bytes or a Blob) as `name` in the directory handle `dir`. */
export async function writeFile(dir, name, data) {
  const h = await dir.getFileHandle(name, { create: true });
  const w = await h.createWritable();
  try {
    await w.write(data);
    await w.close();
  } catch (e) {
    // A failed write (a full quota) leaves the file as it was.
    await w.abort().catch(() => {});
    throw e;
  }
}

/** The File `name` in the directory handle `dir` (a NotFoundError when there is none). */
export const readFile = async (dir, name) => (await dir.getFileHandle(name)).getFile();

/** The bytes the files in `dir` and its subfolders take. */
export async function dirBytes(dir) {
  let n = 0;
  for await (const h of dir.values()) n += h.kind === "file" ? (await h.getFile()).size : await dirBytes(h);
  return n;
}
