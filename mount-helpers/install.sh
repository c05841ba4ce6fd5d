#!/bin/sh
# install.sh -- install (or remove) aoefs, its mount helper, systemd unit and
# status script.
#
#   ./mount-helpers/install.sh                 # install into /usr/local, /sbin, /etc (as root)
#   ./mount-helpers/install.sh --uninstall     # remove what the install put there
#   DESTDIR=/tmp/stage ./mount-helpers/install.sh   # staged install (packaging)
#
# Variables (environment or VAR=value arguments):
#   DESTDIR     staging root prepended to every path below (default: none)
#   PREFIX      /usr/local   PREFIX/bin/aoefs, PREFIX/bin/aoefs-status,
#                            PREFIX/share/doc/aoefs/
#   SBINDIR     /sbin        mount.aoefs and the mount.fuse.aoefs symlink
#                            (mount(8) looks for helpers only in /sbin)
#   UNITDIR     /etc/systemd/system   aoefs@.service
#   SYSCONFDIR  /etc         SYSCONFDIR/aoefs/aoefs.conf.example
#   AOEFS_BIN   the program to install (default: target/release/aoefs,
#               built with "cargo build --release" if it is missing)
#
# Installed files name the final paths (PREFIX, SYSCONFDIR), never DESTDIR.
set -eu

here=$(cd "$(dirname -- "$0")" && pwd)
top=$(cd "$here/.." && pwd)
me=${0##*/}

uninstall=
for a in "$@"; do
    case $a in
        --uninstall|-u) uninstall=1 ;;
        DESTDIR=*|PREFIX=*|SBINDIR=*|UNITDIR=*|SYSCONFDIR=*|AOEFS_BIN=*)
            eval "${a%%=*}=\${a#*=}" ;;
        -h|--help)
            sed -n '2,21s/^# \{0,1\}//p' "$0"
            exit 0 ;;
        *) echo "$me: unknown argument: $a (try --help)" >&2; exit 2 ;;
    esac
done

DESTDIR=${DESTDIR:-}
PREFIX=${PREFIX:-/usr/local}
SBINDIR=${SBINDIR:-/sbin}
UNITDIR=${UNITDIR:-/etc/systemd/system}
SYSCONFDIR=${SYSCONFDIR:-/etc}
BINDIR=$PREFIX/bin
DOCDIR=$PREFIX/share/doc/aoefs

# Every file this script installs (final paths, without DESTDIR).
files="$BINDIR/aoefs
$BINDIR/aoefs-status
$SBINDIR/mount.aoefs
$SBINDIR/mount.fuse.aoefs
$UNITDIR/aoefs@.service
$SYSCONFDIR/aoefs/aoefs.conf.example
$DOCDIR/aoefs.txt"

systemd_reload() {
    if [ -z "$DESTDIR" ] && [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
        systemctl daemon-reload || true
    fi
}

if [ -n "$uninstall" ]; then
    echo "$files" | while IFS= read -r f; do
        p=$DESTDIR$f
        if [ -e "$p" ] || [ -L "$p" ]; then
            rm -f -- "$p"
            echo "removed $p"
        fi
    done
    # directories only aoefs uses, if now empty
    rmdir -- "$DESTDIR$DOCDIR" 2>/dev/null || true
    rmdir -- "$DESTDIR$SYSCONFDIR/aoefs" 2>/dev/null || true
    systemd_reload
    exit 0
fi

bin=${AOEFS_BIN:-$top/target/release/aoefs}
if [ ! -x "$bin" ]; then
    if [ -z "${AOEFS_BIN:-}" ] && command -v cargo >/dev/null 2>&1; then
        echo "$me: building aoefs (cargo build --release)"
        (cd "$top" && cargo build --release --bin aoefs)
    fi
    [ -x "$bin" ] || { echo "$me: $bin: no such program (cargo build --release first)" >&2; exit 1; }
fi

for d in "$BINDIR" "$SBINDIR" "$UNITDIR" "$SYSCONFDIR/aoefs" "$DOCDIR"; do
    mkdir -p -- "$DESTDIR$d"
done

# copy SRC DEST MODE, through a temp file so a running program is not
# overwritten in place
put() {
    tmp=$(dirname -- "$2")/.${2##*/}.tmp.$$
    cp -- "$1" "$tmp"
    chmod "$3" "$tmp"
    mv -f -- "$tmp" "$2"
    echo "installed $2"
}

# edit: a sed script applied while copying
put_edited() {
    tmp=$(dirname -- "$2")/.${2##*/}.tmp.$$
    sed -e "$4" -- "$1" >"$tmp"
    chmod "$3" "$tmp"
    mv -f -- "$tmp" "$2"
    echo "installed $2"
}

# sed replacement text: escape \, & and the delimiter #
sedesc() { printf '%s' "$1" | sed -e 's/[\\&#]/\\&/g'; }

put "$bin" "$DESTDIR$BINDIR/aoefs" 0755
put "$here/status.sh" "$DESTDIR$BINDIR/aoefs-status" 0755
put_edited "$here/mount.aoefs" "$DESTDIR$SBINDIR/mount.aoefs" 0755 \
    "s#^installed_aoefs=.*#installed_aoefs=$(sedesc "$BINDIR/aoefs")#"
ln -sfn mount.aoefs "$DESTDIR$SBINDIR/mount.fuse.aoefs"
echo "installed $DESTDIR$SBINDIR/mount.fuse.aoefs -> mount.aoefs"
put_edited "$here/aoefs@.service" "$DESTDIR$UNITDIR/aoefs@.service" 0644 \
    "s#/usr/bin/aoefs#$(sedesc "$BINDIR/aoefs")#g;s#/usr/share/doc/aoefs#$(sedesc "$DOCDIR")#g;s#/etc/aoefs/#$(sedesc "$SYSCONFDIR/aoefs/")#g"
put "$here/aoefs.conf.example" "$DESTDIR$SYSCONFDIR/aoefs/aoefs.conf.example" 0644
if [ -f "$top/Documentation/aoefs.txt" ]; then
    put "$top/Documentation/aoefs.txt" "$DESTDIR$DOCDIR/aoefs.txt" 0644
fi
systemd_reload
