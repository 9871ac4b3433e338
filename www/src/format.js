// Number formatting shared by the sections: counts, byte sizes and durations as the page shows them.

export const fmtInt = (n) => Math.round(n).toLocaleString("en-US");

export function fmtBytes(b) {
  if (!Number.isFinite(b)) return "?";
  const u = ["B", "KB", "MB", "GB"];
  let i = 0;
  while (b >= 1024 && i < u.length - 1) (b /= 1024), i++;
  return `${b.toFixed(b < 10 && i ? 1 : 0)} ${u[i]}`;
}

export function fmtTime(s) {
  if (!Number.isFinite(s)) return "?";
  s = Math.round(s);
  return s < 60 ? `${s} s` : `${Math.floor(s / 60)} min ${s % 60} s`;
}
