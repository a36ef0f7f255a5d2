#!/bin/sh
# Replays the XXH3 collision against an hsync binary: a client holding a.html
# asks for b.html (signature of a.html, delta of b.html against it, patch).
#
#   tests/vectors/attack/xxh3-collision/check-old-code.sh PATH/TO/hsync
#
# Exit 0: the attack works on this binary (patch accepts the delta and the
# client silently keeps a.html although the server sent b.html).
# Exit 1: it does not (any command fails, or the result is not a.html).
# Made for the record: with a collision-resistant digest and seeded checks it
# is expected to exit 1, so it is not part of the test suite.
set -u

if [ $# -ne 1 ]; then
    echo "usage: $0 PATH/TO/hsync" >&2
    exit 2
fi
case $1 in
    */*) hsync=$(cd "$(dirname "$1")" && pwd)/$(basename "$1") ;;
    *) hsync=$(command -v "$1") || { echo "$1: not found" >&2; exit 2; } ;;
esac
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cp "$here/a.html" "$here/b.html" "$tmp/" && cd "$tmp" || exit 2
a=a.html
b=b.html
echo "hsync: $hsync ($("$hsync" --version))"

echo "a.html: $(wc -c <"$a") bytes, sha256 $(sha256sum <"$a" | cut -c1-16)..."
echo "b.html: $(wc -c <"$b") bytes, sha256 $(sha256sum <"$b" | cut -c1-16)..."
echo "bytes that differ (cmp -l: 1-based offset, a, b in octal):"
cmp -l "$a" "$b" | sed 's/^/  /'

run() {
    echo "\$ hsync $*"
    "$hsync" "$@"
    rc=$?
    echo "  exit $rc"
    return $rc
}

run signature "$a" sig || { echo "RESULT: signature failed: attack not reproduced"; exit 1; }
run delta sig "$b" delta || { echo "RESULT: delta failed: attack not reproduced"; exit 1; }
echo "  signature $(wc -c <sig) bytes, delta $(wc -c <delta) bytes"
if ! run patch "$a" delta out; then
    echo "RESULT: patch rejected the delta: attack detected (not reproduced)"
    exit 1
fi
if cmp -s out "$b"; then
    echo "RESULT: out == b.html: the client got what the server sent (attack not reproduced)"
    exit 1
fi
if cmp -s out "$a"; then
    echo "RESULT: out == a.html, not b.html: patch accepted the delta and the client silently kept a.html"
    exit 0
fi
echo "RESULT: out is neither a.html nor b.html"
exit 1
