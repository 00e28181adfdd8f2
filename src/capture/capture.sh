#!/bin/sh
# usm-leak-detector capture script @VERSION@ (print a runnable copy with: usm-leak-detector capture-script)
#
# Collects what usm-leak-detector needs to find leaked USM eBPF map entries, on a box that has
# only sh and bpftool (or Datadog's system-probe), so the analysis can run anywhere:
#     usm-leak-detector scan --from DIR
# Layout (DIR/later/ holds the same again, taken after the delay, for recheck):
#   meta/{hostname,kernel,time,backend}    one value each (meta/log: what went wrong, if anything)
#   meta/monotonic, meta/monotonic-snapshot  CLOCK_MONOTONIC before the dumps / before proc/, as
#                                          "<ns> timer_list" (/proc/timer_list, root) or "<ns> uptime"
#   meta/delay                             -d: the seconds asked for before later/ (first look only)
#   meta/selection                         -m/-i: `names N1 N2 ...` (kernel names), `ids 1,2,...`
#   maps/list.json                         bpftool -j map show   (system-probe: maps/list.txt)
#   maps/dump-<ID>.json                    bpftool -j map dump id <ID>, for USM catalogue maps (and, with
#                                          bpftool and no -m, the maps sharing their BTF object)
#   maps/btf-<ID>.json                     bpftool -j btf dump id <ID>, the BTF objects of the dumped maps
#   proc/<pid>/{stat,comm}, proc/<pid>/ns/net (symlink), proc/<pid>/task/<tid>/stat
#   proc/<pid>/fd.ls                       ls -l of its fd/ (socket inodes), only when a pid_fd map was dumped
#   proc/<pid>/net/{tcp,tcp6,udp,udp6}     for one process per network namespace
#   netns/<INODE>/{tcp,tcp6,udp,udp6,paths}  bind-mounted namespaces no process is in (nsenter)
#
# Runs under dash, bash and busybox sh. Needs cat, readlink, mkdir, ln, rm, sleep and bpftool or
# system-probe; uses nsenter, tar, gzip, timeout, date and ls when present. Run it as root.

set -u
umask 077

# Never run anything from the current directory: a relative PATH entry (`.`, an empty one) is
# dropped, and the backend is never looked for as ./bpftool. As root, a binary another user could
# have planted would run with root's privileges.
safe_path=
old_ifs=$IFS
IFS=:
set -f
for entry in ${PATH:-}; do
  case $entry in /*) safe_path=${safe_path:+$safe_path:}$entry ;; esac
done
set +f
IFS=$old_ifs
PATH=${safe_path:-/usr/sbin:/usr/bin:/sbin:/bin}
export PATH

VERSION='@VERSION@'
# Kernel names (first 15 characters) of the catalogue maps, generated from src/catalogue.ts.
USM_MAPS='@USM_MAPS@'

usage() {
  cat >&2 <<'EOF'
Usage: sh capture.sh [-o DIR|-] [-d SECONDS] [-t] [-p PROC_ROOT] [-b bpftool|system-probe] [-B PATH] [-m NAMES] [-i IDS]
  -o DIR   write the capture to DIR (default ./usmld-capture-HOST-TIME); "-" writes a tar.gz to stdout
  -d N     seconds to wait before the second look in DIR/later (default 2; 0 skips it)
  -t       also pack DIR into DIR.tar.gz (needs tar)
  -p ROOT  proc root to read (default /proc; /host/proc in a container that mounts the host's)
  -b NAME  backend: bpftool or system-probe (default: a bpftool that runs, else system-probe)
  -B PATH  the backend's binary
  -m NAMES only these catalogue maps (comma-separated, full or 15-character kernel names)
  -i IDS   only the maps with these ids (comma-separated)
Analyse elsewhere with: usm-leak-detector scan --from DIR
EOF
  exit "${1:-2}"
}

log() {
  printf 'capture.sh: %s\n' "$*" >&2
  if [ -n "${logfile:-}" ]; then printf '%s\n' "$*" >> "$logfile"; fi
}

die() {
  code=$1
  shift
  log "$*"
  exit "$code"
}

case $USM_MAPS in
  @*) die 2 "this is the template; get a runnable script with: usm-leak-detector capture-script > capture.sh" ;;
esac

out=
want_fds=0
delay=2
pack=0
proc=/proc
backend=
tool=
only_names=
only_ids=
while [ $# -gt 0 ]; do
  case $1 in
    -o|-d|-p|-b|-B|-m|-i) [ $# -ge 2 ] || { log "$1 needs a value"; usage 2; } ;;
  esac
  case $1 in
    -o) out=$2; shift 2 ;;
    -d) delay=$2; shift 2 ;;
    -t) pack=1; shift ;;
    -p) proc=$2; shift 2 ;;
    -b) backend=$2; shift 2 ;;
    -B) tool=$2; shift 2 ;;
    -m) only_names=$2; shift 2 ;;
    -i) only_ids=$2; shift 2 ;;
    -h|--help) usage 0 ;;
    *) log "unknown argument: $1"; usage 2 ;;
  esac
done
case $delay in ''|*[!0-9]*) die 2 "-d wants whole seconds, got '$delay'" ;; esac
case $backend in ''|bpftool|system-probe) ;; *) die 2 "-b wants bpftool or system-probe, got '$backend'" ;; esac
case $only_ids in *[!0-9,]*) die 2 "-i wants map ids separated by commas, got '$only_ids'" ;; esac
# -m: kernel names (a full name is cut to 15 characters, as the kernel does); blank items are
# ignored, unknown names refused, so a stray comma never selects everything.
if [ -n "$only_names" ]; then
  selected=' '
  rest=$only_names,
  while [ -n "$rest" ]; do
    item=${rest%%,*}
    rest=${rest#*,}
    [ -n "$item" ] || continue
    if [ ${#item} -gt 15 ]; then item=${item%"${item#???????????????}"}; fi
    case " $USM_MAPS " in *" $item "*) selected="$selected$item " ;; *) die 2 "-m: $item is not a catalogue map; known: $USM_MAPS" ;; esac
  done
  [ "$selected" != ' ' ] || die 2 "-m selects no map"
  USM_MAPS=$selected
fi
[ -r "$proc/self/stat" ] || [ -d "$proc/1" ] || die 3 "$proc does not look like a proc filesystem"

# Every backend call gets a time limit when timeout(1) exists.
limit=
if command -v timeout >/dev/null 2>&1; then limit='timeout 300'; fi

# --- backend -----------------------------------------------------------------------------------

# As root, run only binaries nobody else could have planted or changed: the file and every
# directory above it (of its real path and of the path it was found at) owned by root and not
# writable by group or others; a sticky directory (like /tmp) may be. Not root: no check.
owned_chain() {
  p=$1
  while :; do
    if [ -L "$p" ]; then
      [ -n "$(find "$p" -prune -user 0 2>/dev/null)" ] || return 1
    elif [ -z "$(find "$p" -prune -user 0 ! -perm -020 ! -perm -002 2>/dev/null)" ]; then
      [ -d "$p" ] && [ -n "$(find "$p" -prune -user 0 -perm -1000 2>/dev/null)" ] || return 1
    fi
    [ "$p" = / ] && return 0
    p=$(dirname "$p")
  done
}

trusted() {
  [ "$(id -u 2>/dev/null)" = 0 ] || return 0
  case $1 in /*) ;; *) return 1 ;; esac
  real=$(readlink -f "$1" 2>/dev/null) || real=$1
  if owned_chain "$real" && owned_chain "$(dirname "$1")"; then return 0; fi
  log "not running $1 as root: it or a directory above it is not owned by root or is writable by others"
  return 1
}

# As root, the tools this script runs (cat, find, tar, ...) come only from PATH directories that
# pass the same rule: a directory another user can write could hold a planted `cat`. The check
# itself runs with the system directories only.
user_path=$PATH
PATH=/usr/sbin:/usr/bin:/sbin:/bin
if [ "$(id -u 2>/dev/null)" = 0 ]; then
  safe_path=
  IFS=:
  set -f
  for entry in $user_path; do
    if owned_chain "$entry"; then
      safe_path=${safe_path:+$safe_path:}$entry
    else
      log "PATH: not using $entry as root: it or a directory above it is not owned by root or is writable by others"
    fi
  done
  set +f
  IFS=$old_ifs
  PATH=${safe_path:-/usr/sbin:/usr/bin:/sbin:/bin}
else
  PATH=$user_path
fi
export PATH

use_bpftool() {
  # Ubuntu's /usr/sbin/bpftool wrapper fails without linux-tools for this kernel: ask it to run.
  [ -n "$1" ] && [ -f "$1" ] && [ -x "$1" ] && trusted "$1" && "$1" version >/dev/null 2>&1 </dev/null || return 1
  tool=$1
  backend=bpftool
}

use_system_probe() {
  [ -n "$1" ] && [ -f "$1" ] && [ -x "$1" ] && trusted "$1" || return 1
  tool=$1
  backend=system-probe
}

if [ -n "$tool" ]; then
  case $tool in /*) ;; *) tool=$(pwd)/$tool ;; esac
  if [ -z "$backend" ]; then
    case ${tool##*/} in *system-probe*) backend=system-probe ;; *) backend=bpftool ;; esac
  fi
  if [ "$backend" = bpftool ]; then
    use_bpftool "$tool" || die 3 "$tool does not run 'bpftool version' (or may not run as root, see above)"
  else
    use_system_probe "$tool" || die 3 "$tool is not an executable file (or may not run as root, see above)"
  fi
else
  wanted=$backend
  if [ "$wanted" != system-probe ]; then
    use_bpftool "${BPFTOOL:-}" || use_bpftool "$(command -v bpftool 2>/dev/null)" ||
      use_bpftool /usr/sbin/bpftool || use_bpftool /usr/local/sbin/bpftool || true
  fi
  if [ -z "$tool" ] && [ "$wanted" != bpftool ]; then
    use_system_probe /opt/datadog-agent/embedded/bin/system-probe || use_system_probe /usr/bin/system-probe ||
      use_system_probe "$(command -v system-probe 2>/dev/null)" || true
  fi
  [ -n "$tool" ] || die 3 "no usable ${wanted:-bpftool or system-probe} found (give one with -B PATH)"
fi

# --- the parts of one look ---------------------------------------------------------------------

# CLOCK_MONOTONIC (what eBPF dates map values with) as "<ns> <source>": /proc/timer_list's
# `now at` (root only), else /proc/uptime (CLOCK_BOOTTIME to 10 ms: the same unless suspended).
monotonic() {
  if [ -r "$proc/timer_list" ]; then
    while read -r w1 w2 w3 _rest; do
      if [ "$w1 $w2" = "now at" ]; then
        printf '%s timer_list\n' "$w3"
        return 0
      fi
    done < "$proc/timer_list"
  fi
  up=
  read -r up _ < "$proc/uptime" 2>/dev/null || return 1
  printf '%s%s0000000 uptime\n' "${up%.*}" "${up#*.}"
}

capture_meta() {
  mkdir -p "$1/meta" || die 3 "cannot create $1/meta"
  value=
  IFS= read -r value 2>/dev/null < /proc/sys/kernel/hostname
  printf '%s\n' "$value" > "$1/meta/hostname"
  value=
  IFS= read -r value 2>/dev/null < /proc/sys/kernel/osrelease
  printf '%s\n' "$value" > "$1/meta/kernel"
  date -u +%Y-%m-%dT%H:%M:%SZ > "$1/meta/time" 2>/dev/null || echo unknown > "$1/meta/time"
  printf '%s\n' "$backend" > "$1/meta/backend"
  # The delay asked for before the second look (later/), with the first look.
  if [ "$look" = first ]; then printf '%s\n' "$delay" > "$1/meta/delay"; fi
  # -m/-i: the maps left out on purpose, so a replay does not count them as failed dumps.
  if [ -n "$only_names$only_ids" ]; then
    { [ -z "$only_names" ] || printf 'names%s\n' "${USM_MAPS% }"; [ -z "$only_ids" ] || printf 'ids %s\n' "$only_ids"; } > "$1/meta/selection"
  fi
}

# Lists the maps, then dumps those whose kernel name is a catalogue name. Selection reads the
# plain-text listing (`ID: TYPE  name NAME  flags ...`, the same for bpftool and system-probe)
# because sh cannot parse JSON; for bpftool a map must also be in the saved JSON listing, so
# every dump has its map record.
capture_maps() {
  maps=$1/maps
  mkdir -p "$maps" || die 3 "cannot create $maps"
  monotonic > "$1/meta/monotonic" 2>/dev/null || rm -f "$1/meta/monotonic"
  if [ "$backend" = bpftool ]; then
    $limit "$tool" -j map show > "$maps/list.json" 2> "$maps/.err" < /dev/null ||
      die 3 "bpftool -j map show failed: $(cat "$maps/.err")"
    $limit "$tool" map show > "$maps/.list" 2> "$maps/.err" < /dev/null ||
      die 3 "bpftool map show failed: $(cat "$maps/.err")"
    listed=$(cat "$maps/list.json")
    selection=$maps/.list
  else
    $limit "$tool" ebpf map list > "$maps/list.txt" 2> "$maps/.err" < /dev/null ||
      die 3 "system-probe ebpf map list failed: $(cat "$maps/.err")"
    listed=
    selection=$maps/list.txt
  fi
  # bpftool: each map's BTF object (`btf_id N` in the plain listing). The USM maps' BTF is saved
  # (maps/btf-<ID>.json: exact layouts, and maps no catalogue knows, for the analysis) and, without
  # -m, maps sharing it are dumped too: the analysis keeps those whose key holds a conn_tuple_t.
  map_btf=' '
  usm_btf=' '
  if [ "$backend" = bpftool ]; then
    cur=
    while IFS= read -r line; do
      case $line in
        [0-9]*': '*) cur=${line%%:*} ;;
        *btf_id\ [0-9]*) b=${line#*btf_id }; map_btf="$map_btf$cur:${b%% *} " ;;
      esac
    done < "$maps/.list"
  fi
  dumped=0
  for pass in usm shared; do
  [ "$pass" = shared ] && { [ "$backend" = bpftool ] && [ -z "$only_names" ] && [ "$usm_btf" != ' ' ] && command -v grep >/dev/null 2>&1 || break; }
  while IFS= read -r line; do
    case $line in [0-9]*': '*'  name '*) ;; *) continue ;; esac
    id=${line%%:*}
    name=${line#*  name }
    name=${name%%  *}
    btf=
    case $map_btf in *" $id:"*) btf=${map_btf#*" $id:"}; btf=${btf%% *} ;; esac
    if [ "$pass" = usm ]; then
      [ -n "$name" ] || continue
      case " $USM_MAPS " in *" $name "*) ;; *) continue ;; esac
    else
      case " $USM_MAPS " in *" $name "*) continue ;; esac
      case $usm_btf in *" $btf "*) ;; *) continue ;; esac
      # Declared in that BTF's .maps (a map of the same object), not merely listed with its id.
      grep -q "\"kind\":\"VAR\",\"name\":\"$name" "$maps/btf-$btf.json" 2>/dev/null || continue
    fi
    if [ -n "$only_ids" ]; then
      case ",$only_ids," in *",$id,"*) ;; *) continue ;; esac
    fi
    if [ "$backend" = bpftool ]; then
      case $listed in *"\"id\":$id,"*) ;; *) log "map $id ($name) appeared after the JSON listing: not dumped"; continue ;; esac
      $limit "$tool" -j map dump id "$id" > "$maps/dump-$id.json" 2> "$maps/.err" < /dev/null ||
        log "bpftool map dump id $id ($name) failed: $(cat "$maps/.err")"
    else
      $limit "$tool" ebpf map dump id "$id" > "$maps/dump-$id.json" 2> "$maps/.err" < /dev/null ||
        log "system-probe ebpf map dump id $id ($name) failed: $(cat "$maps/.err")"
    fi
    if [ -n "$btf" ] && [ ! -e "$maps/btf-$btf.json" ]; then
      $limit "$tool" -j btf dump id "$btf" > "$maps/btf-$btf.json" 2> /dev/null < /dev/null || rm -f "$maps/btf-$btf.json"
      usm_btf="$usm_btf$btf "
    fi
    [ "$pass" = usm ] || continue
    dumped=$((dumped + 1))
    # pid_fd keys are judged by the processes' socket fds: capture_process lists them.
    case $name in tuple_by_pid_fd|sock_by_pid_fd) want_fds=1 ;; esac
  done < "$selection"
  done
  rm -f "$maps/.err" "$maps/.list"
  mapcount=$dumped
  # No USM map at the first look: a capture without maps answers nothing, say so and stop.
  if [ "$dumped" -eq 0 ] && [ "$look" = first ]; then
    what='no USM map found'
    if [ -n "$only_names$only_ids" ]; then what="no USM map matches${only_names:+ -m $only_names}${only_ids:+ -i $only_ids}"; fi
    die 3 "$what in the map listing ($maps): is system-probe running with USM enabled? Nothing to capture."
  fi
  [ "$dumped" -gt 0 ] || log "no USM map found in $maps at the second look (the maps went away?)"
}

copy_table() {
  cat "$1" > "$2" 2>/dev/null < /dev/null || { rm -f "$2"; return 1; }
}

# The four socket tables of $1 (a /proc/PID/net) into $2; fails when tcp cannot be read.
copy_tables() {
  mkdir -p "$2" 2>/dev/null || return 1
  if copy_table "$1/tcp" "$2/tcp"; then
    copy_table "$1/tcp6" "$2/tcp6"
    copy_table "$1/udp" "$2/udp"
    copy_table "$1/udp6" "$2/udp6"
    return 0
  fi
  rm -rf "$2"
  return 1
}

# One process: stat, comm, the ns/net link, each thread's stat, and the socket tables when it is
# the first process seen in its namespace.
capture_process() {
  p=$1
  pid=${p##*/}
  stat=
  IFS= read -r stat 2>/dev/null < "$p/stat"
  [ -n "$stat" ] || return 0 # gone already
  comm=
  IFS= read -r comm 2>/dev/null < "$p/comm"
  ns=$(readlink "$p/ns/net" 2>/dev/null)
  dir=$base/$pid
  set -- "$dir/ns"
  for t in "$p"/task/[0-9]*; do
    [ -e "$t" ] && set -- "$@" "$dir/task/${t##*/}"
  done
  mkdir -p "$@" 2>/dev/null || return 0
  printf '%s\n' "$stat" > "$dir/stat"
  printf '%s\n' "$comm" > "$dir/comm"
  if [ "$want_fds" = 1 ]; then ls -l "$p/fd" > "$dir/fd.ls" 2>/dev/null < /dev/null || rm -f "$dir/fd.ls"; fi
  for t in "$p"/task/[0-9]*; do
    [ -d "$dir/task/${t##*/}" ] || continue
    tstat=
    IFS= read -r tstat 2>/dev/null < "$t/stat"
    if [ -n "$tstat" ]; then
      printf '%s\n' "$tstat" > "$dir/task/${t##*/}/stat"
    else
      rmdir "$dir/task/${t##*/}" 2>/dev/null
    fi
  done
  processes=$((processes + 1))
  case $ns in
    net:\[*)
      ln -s "$ns" "$dir/ns/net"
      case $seen in *" $ns "*) return 0 ;; esac
      if copy_tables "$p/net" "$dir/net"; then
        seen="$seen$ns "
        namespaces=$((namespaces + 1))
      fi
      ;;
    *)
      # A zombie has no namespace any more: no link, as live. Any other process whose link
      # cannot be read (some sandboxes refuse even root for pid 1) gets a link saying so, and its
      # tables, so the analysis can place its sockets by their inodes as a live run does.
      state=${stat##*) }
      case $state in Z*|X*|x*) return 0 ;; esac
      ln -s unreadable "$dir/ns/net"
      if [ "$refused" -lt 256 ]; then
        refused=$((refused + 1))
        copy_tables "$p/net" "$dir/net"
      fi
      ;;
  esac
}

# Processes in ascending pid order (glob order is textual, so one glob per digit count), so the
# process whose tables stand for a namespace is the one a live run reads first. Sets `seen`:
# the namespaces (as `net:[INODE]`) whose tables were copied.
capture_proc() {
  base=$1/proc
  mkdir -p "$base" || die 3 "cannot create $base"
  monotonic > "$1/meta/monotonic-snapshot" 2>/dev/null || rm -f "$1/meta/monotonic-snapshot"
  seen=' '
  processes=0
  namespaces=0
  refused=0
  digits='[0-9]'
  for n in 1 2 3 4 5 6 7; do
    for p in "$proc"/$digits; do
      [ -e "$p/stat" ] && capture_process "$p"
    done
    digits="$digits[0-9]"
  done
}

# Network namespaces held by bind mounts (ip netns add, container runtimes), from the host's
# mount table ($proc/1/mountinfo) and ours: every mount path goes to netns/<INODE>/paths, and a
# namespace no process is in has its tables read from inside through nsenter, entering the
# mount point or, from inside a container, $proc/1/root<mount point>.
# Reads the tables of the namespace at $1 into $dir, when it is the namespace $root mountinfo
# named (checked inside, before the tables are trusted).
enter_netns() {
  inside=$("$nsenter_bin" --net="$1" sh -c 'readlink /proc/self/ns/net; for t in tcp tcp6 udp udp6; do cat "/proc/self/net/$t" > "$1/$t" 2>/dev/null || rm -f "$1/$t"; done' sh "$dir" 2>/dev/null < /dev/null)
  [ "$inside" = "$root" ] && return 0
  rm -f "$dir/tcp" "$dir/tcp6" "$dir/udp" "$dir/udp6"
  return 1
}

capture_netns() {
  base=$1/netns
  extra=0
  mounts=' '
  have_nsenter=1
  nsenter_bin=$(command -v nsenter 2>/dev/null) && trusted "$nsenter_bin" || have_nsenter=0
  for table in "$proc/1/mountinfo" /proc/self/mountinfo; do
    [ -r "$table" ] || continue
    while read -r _id _parent _dev root mnt rest; do
      case $root in net:\[*\]) ;; *) continue ;; esac
      case $rest in *' - nsfs '*|*' - proc '*) ;; *) continue ;; esac
      case $mounts in *" $root$mnt "*) continue ;; esac
      mounts="$mounts$root$mnt "
      inode=${root#net:[}
      inode=${inode%]}
      path=$mnt
      case $mnt in *\\*) path=$(printf '%b' "$mnt") ;; esac
      dir=$base/$inode
      fresh=0
      [ -d "$dir" ] || fresh=1
      mkdir -p "$dir" || continue
      printf '%s\n' "$path" >> "$dir/paths"
      case $seen in *" $root "*) continue ;; esac
      [ -e "$dir/tcp" ] && continue
      [ "$fresh" = 1 ] && extra=$((extra + 1))
      if [ "$have_nsenter" = 0 ]; then
        log "nsenter not found: namespace $root (mounted on $path) has no process and its tables are not captured"
        continue
      fi
      enter_netns "$path" || enter_netns "$proc/1/root$path" || {
        # pid 1's root refused (a sandbox, a container that may not trace it): the root of
        # another process that sees the mount (the host's daemons share its mount namespace).
        tries=0
        for p in "$proc"/[0-9]*; do
          [ "$tries" -lt 16 ] || break
          [ "${p##*/}" != 1 ] && [ -e "$p/root$path" ] || continue
          tries=$((tries + 1))
          enter_netns "$p/root$path" && break
        done
      }
      [ -e "$dir/tcp" ] || log "cannot read the tables of namespace $root through $path"
    done < "$table"
  done
}

capture_once() {
  capture_meta "$1"
  capture_maps "$1"
  capture_proc "$1"
  capture_netns "$1"
  log "captured $mapcount map(s), $processes process(es), $((namespaces + extra)) network namespace(s) into $1"
}

# sleep(1), or, where a seccomp profile refuses nanosleep, a wait on /proc/uptime (busy, bounded).
pause() {
  sleep "$1" 2>/dev/null && return 0
  log "sleep failed: waiting on /proc/uptime instead"
  read -r up _ < /proc/uptime
  start=${up%.*}${up#*.}
  now=$start
  while [ $((now - start)) -lt $(($1 * 100)) ]; do
    read -r up _ < /proc/uptime
    now=${up%.*}${up#*.}
  done
}

# --- main --------------------------------------------------------------------------------------

host=
IFS= read -r host 2>/dev/null < /proc/sys/kernel/hostname
stamp=$(date -u +%Y%m%dT%H%M%SZ 2>/dev/null) || stamp=$$
name=usmld-capture-${host:-host}-$stamp

to_stdout=0
scratch=
if [ "$out" = - ]; then
  command -v tar >/dev/null 2>&1 || die 3 "-o - needs tar"
  to_stdout=1
  scratch=$(mktemp -d 2>/dev/null) || { scratch=${TMPDIR:-/tmp}/usmld-capture.$$; mkdir "$scratch" || die 3 "cannot create $scratch"; }
  trap 'rm -rf "$scratch"' EXIT
  trap 'exit 130' INT TERM
  out=$scratch/$name
fi
[ -n "$out" ] || out=./$name
while :; do case $out in */) out=${out%/} ;; *) break ;; esac; done
if [ -e "$out" ]; then
  set -- "$out"/*
  [ -d "$out" ] && [ ! -e "$1" ] || die 2 "$out already exists and is not an empty directory"
fi
mkdir -p "$out/meta" || die 3 "cannot create $out"
logfile=$out/meta/log
: > "$logfile"
log "usm-leak-detector capture $VERSION with $backend ($tool) into $out"

look=first
capture_once "$out"
if [ "$delay" -gt 0 ]; then
  log "waiting ${delay}s for the second look (later/)"
  pause "$delay"
  look=second
  capture_once "$out/later"
fi

case $out in */*) parent=${out%/*} ;; *) parent=. ;; esac
[ -n "$parent" ] || parent=/
leaf=${out##*/}
if [ "$to_stdout" = 1 ]; then
  if command -v gzip >/dev/null 2>&1; then
    tar -C "$parent" -cf - "$leaf" | gzip -c || die 3 "tar failed"
  else
    tar -C "$parent" -cf - "$leaf" || die 3 "tar failed"
  fi
elif [ "$pack" = 1 ]; then
  if tar -C "$parent" -czf "$out.tar.gz" "$leaf" 2>/dev/null; then
    log "packed $out.tar.gz"
  elif tar -C "$parent" -cf "$out.tar" "$leaf"; then
    rm -f "$out.tar.gz"
    log "packed $out.tar (no gzip)"
  else
    die 3 "tar failed; the capture is in $out"
  fi
fi
if [ "$to_stdout" = 1 ]; then
  log "done: wrote $leaf as a tarball on stdout; unpack it and analyse with: usm-leak-detector scan --from $leaf"
else
  log "done: analyse with: usm-leak-detector scan --from $out"
fi
