// Files in this browser's private storage (OPFS), for the checkpoint and the kept adapter.

/** Writes `data` (a string, bytes or a Blob) as `name` in the directory handle `dir`. */
export async function writeFile(dir, name, data) {
  const h = await dir.getFileHandle(name, { create: true });
  const w = await h.createWritable();
  await w.write(data);
  await w.close();
}

/** The File `name` in the directory handle `dir` (a NotFoundError when there is none). */
export const readFile = async (dir, name) => (await dir.getFileHandle(name)).getFile();
