// Network namespaces held by a bind mount (`ip netns add NAME` mounts one on /run/netns/NAME;
// container runtimes do the same elsewhere). No process needs to be in them, so they are found
// through mountinfo, not through /proc/PID/ns/net.
//
// For nsfs mounts the kernel shows the namespace itself as the mount's root: field 4 reads
// `net:[INODE]` (kernels before 3.19 showed the same under fstype `proc`).

export interface NetnsMount {
  netnsInode: number;
  /** Mount point as mountinfo shows it, unescaped. */
  mountPoint: string;
}

/** Undoes mountinfo's octal escapes (`\040` space, `\011` tab, `\012` newline, `\134` backslash). */
function unescapeMountPath(path: string): string {
  return path.includes(`\\`) ? path.replace(/\\([0-7]{3})/g, (_, octal: string) => String.fromCharCode(parseInt(octal, 8))) : path;
}

/** The network-namespace mounts listed in one mountinfo file's text. */
export function parseNetnsMounts(text: string): Array<NetnsMount> {
  const mounts: Array<NetnsMount> = [];
  for (const line of text.split(`\n`)) {
    if (!line.includes(` net:[`))
      continue;
    const fields = line.split(` `);
    const separator = fields.indexOf(`-`, 6);
    if (fields.length < 10 || separator < 0)
      continue;
    const fsType = fields[separator + 1];
    const match = /^net:\[(\d+)\]$/.exec(fields[3]);
    if (!match || (fsType !== `nsfs` && fsType !== `proc`))
      continue;
    mounts.push({netnsInode: Number(match[1]), mountPoint: unescapeMountPath(fields[4])});
  }
  return mounts;
}
