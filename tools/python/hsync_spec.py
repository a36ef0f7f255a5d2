#!/usr/bin/env python3
"""A second hsync implementation, written from docs/protocol.md alone.

It computes the signature of a file (signature version 3, protocol.md §3)
and applies a delta (delta version 2, §4), verifying its length and
BLAKE3-256 digest. It shares no code with the Rust crates and was written
without reading them: where the spec was not enough, the spec was fixed.
Clarity over speed: it is meant for test-sized inputs (BLAKE3 is pure
Python here, under 1 MB/s).

Needs Python 3.9+ with Debian's python3-xxhash (XXH3-64) and
python3-zstandard (zstd frames without magic, raw-content prefix).

    hsync_spec.py signature [--seed N] [--sub LOG:BITS] OLD SIG
    hsync_spec.py patch [--max-output N] [-v] OLD DELTA NEW
    hsync_spec.py vectors DIR          (checks tests/vectors)

A rejected delta exits with status 1 and prints `KIND: reason`, KIND as in
tests/vectors/bad/*/expect (BadMagic, UnsupportedVersion, Truncated,
WrongBase, TooLarge, DigestMismatch) or Malformed for any other defect.
"""

import math
import os
import sys

try:
    import xxhash
    import zstandard
except ImportError as e:  # pragma: no cover - the message is the point
    sys.exit(f"hsync_spec: {e.name} missing: apt-get install python3-xxhash python3-zstandard (build/deps), "
             "and run Debian's /usr/bin/python3")

MASK32 = 0xFFFFFFFF
MASK64 = 0xFFFFFFFFFFFFFFFF

# ---------------------------------------------------------------------------
# BLAKE3-256 (unkeyed hash mode), from the BLAKE3 specification.

B3_IV = (0x6A09E667, 0xBB67AE85, 0x3C6EF372, 0xA54FF53A, 0x510E527F, 0x9B05688C, 0x1F83D9AB, 0x5BE0CD19)
B3_PERM = (2, 6, 3, 10, 7, 0, 4, 13, 1, 11, 12, 5, 9, 14, 15, 8)
CHUNK_START, CHUNK_END, PARENT, ROOT = 1, 2, 4, 8


def _b3_compress(cv, m, counter, block_len, flags):
    """The compression function: 8 words of chaining value out."""
    s = list(cv) + list(B3_IV[:4]) + [counter & MASK32, counter >> 32, block_len, flags]
    m = list(m)

    def g(a, b, c, d, x, y):
        s[a] = (s[a] + s[b] + x) & MASK32
        t = s[d] ^ s[a]
        s[d] = ((t >> 16) | (t << 16)) & MASK32
        s[c] = (s[c] + s[d]) & MASK32
        t = s[b] ^ s[c]
        s[b] = ((t >> 12) | (t << 20)) & MASK32
        s[a] = (s[a] + s[b] + y) & MASK32
        t = s[d] ^ s[a]
        s[d] = ((t >> 8) | (t << 24)) & MASK32
        s[c] = (s[c] + s[d]) & MASK32
        t = s[b] ^ s[c]
        s[b] = ((t >> 7) | (t << 25)) & MASK32

    for r in range(7):
        g(0, 4, 8, 12, m[0], m[1])
        g(1, 5, 9, 13, m[2], m[3])
        g(2, 6, 10, 14, m[4], m[5])
        g(3, 7, 11, 15, m[6], m[7])
        g(0, 5, 10, 15, m[8], m[9])
        g(1, 6, 11, 12, m[10], m[11])
        g(2, 7, 8, 13, m[12], m[13])
        g(3, 4, 9, 14, m[14], m[15])
        if r < 6:
            m = [m[i] for i in B3_PERM]
    return [s[i] ^ s[i + 8] for i in range(8)]


def _words(block):
    block = block + bytes(64 - len(block))
    return [int.from_bytes(block[i:i + 4], "little") for i in range(0, 64, 4)]


def blake3(data):
    """BLAKE3-256 of data (hash mode, default key = IV, 32-byte output)."""
    chunks = [data[i:i + 1024] for i in range(0, len(data), 1024)] or [b""]
    stack = []  # chaining values of complete subtrees, as in the reference
    for index, chunk in enumerate(chunks):
        blocks = [chunk[i:i + 64] for i in range(0, len(chunk), 64)] or [b""]
        last_chunk = index == len(chunks) - 1
        cv = B3_IV
        for j, block in enumerate(blocks):
            flags = (CHUNK_START if j == 0 else 0) | (CHUNK_END if j == len(blocks) - 1 else 0)
            if last_chunk and len(chunks) == 1 and j == len(blocks) - 1:
                flags |= ROOT
            cv = _b3_compress(cv, _words(block), index, len(block), flags)
        if last_chunk:
            break
        # Merge the subtrees this chunk completes (one per trailing zero of index + 1).
        total = index + 1
        while total & 1 == 0:
            cv = _b3_compress(B3_IV, stack.pop() + cv, 0, 64, PARENT)
            total >>= 1
        stack.append(cv)
    # cv is the last chunk's; fold the stack into it, the last parent being the root.
    while stack:
        cv = _b3_compress(B3_IV, stack.pop() + cv, 0, 64, PARENT | (0 if stack else ROOT))
    return b"".join(w.to_bytes(4, "little") for w in cv)


# ---------------------------------------------------------------------------
# Signature (protocol.md §3)

M = 0x9E3779B1
SIG_MAX = 4608
SUB_SEED = 0x6873796E63737562  # "hsyncsub"


def rolling_hash(block):
    """R of §3.2: sum b_k * M^(n-1-k) mod 2^32 (Horner's rule)."""
    r = 0
    for b in block:
        r = (r * M + b) & MASK32
    return r


def varint(v):
    out = bytearray()
    while True:
        byte = v & 0x7F
        v >>= 7
        if v:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def sig_len(block_len, instance_len, weak_bits, strong_bits, sub_log=0, sub_bits=0):
    """Length in bytes of a signature (§3.1)."""
    blocks = -(-instance_len // block_len)
    bits = blocks * (weak_bits + strong_bits)
    if sub_log:
        bits += -(-instance_len // (block_len >> sub_log)) * sub_bits
    return 14 + len(varint(block_len)) + len(varint(instance_len)) + (bits + 7) // 8


def sig_params(n):
    """(block_len, weak_bits, strong_bits) for an n-byte instance, by §3.3."""
    block_len = -(-max(64, math.ceil(1.5 * math.sqrt(n))) // 16) * 16
    while True:
        blocks = max(1, -(-n // block_len))
        lb, ln = math.log2(blocks), math.log2(max(n, 1))
        bits = math.ceil(max(lb + 12, (ln + lb + 12) / 2, ln + 1))
        bits = min(max(bits, 16), 64)
        weak = min(bits - 4, 32)
        strong = bits - weak
        if sig_len(block_len, n, weak, strong) <= SIG_MAX:
            return block_len, weak, strong
        block_len = -(-(block_len + block_len // 32) // 16) * 16


def signature(old, seed, sub_log=0, sub_bits=0):
    """The signature of `old` with the given 64-bit seed; with sub_log, also
    sub-block checks of sub_bits bits (§3.4)."""
    block_len, weak_bits, strong_bits = sig_params(len(old))
    if sub_log and not (1 <= sub_log <= 8 and 1 <= sub_bits <= 16 and block_len % (1 << sub_log) == 0
                        and block_len >> sub_log >= 8):
        raise ValueError(f"sub-blocks {sub_log}:{sub_bits} do not fit block_len {block_len}")
    sub = sub_log << 4 | (sub_bits - 1) if sub_log else 0
    out = bytearray(b"hs" + bytes([3, weak_bits, strong_bits, sub]))
    out += seed.to_bytes(8, "big")
    out += varint(block_len) + varint(len(old))
    acc, nbits = 0, 0  # bit accumulator, most significant bit first

    def put(value, width):
        nonlocal acc, nbits
        acc = acc << width | value
        nbits += width
        while nbits >= 8:
            nbits -= 8
            out.append(acc >> nbits)
            acc &= (1 << nbits) - 1

    for start in range(0, len(old), block_len):
        block = old[start:start + block_len]
        put(rolling_hash(block) >> (32 - weak_bits), weak_bits)
        put(xxhash.xxh3_64_intdigest(block, seed=seed) & ((1 << strong_bits) - 1), strong_bits)
    if sub_log:
        sub_len = block_len >> sub_log
        for start in range(0, len(old), sub_len):
            check = xxhash.xxh3_64_intdigest(old[start:start + sub_len], seed=seed ^ SUB_SEED)
            put(check & ((1 << sub_bits) - 1), sub_bits)
    if nbits:
        out.append(acc << (8 - nbits))  # zero padding bits
    assert len(out) == sig_len(block_len, len(old), weak_bits, strong_bits, sub_log, sub_bits)
    return bytes(out)


# ---------------------------------------------------------------------------
# Delta (protocol.md §4)

class DeltaError(Exception):
    def __init__(self, kind, reason):
        super().__init__(f"{kind}: {reason}")
        self.kind = kind


def fail(kind, reason):
    raise DeltaError(kind, reason)


class Reader:
    def __init__(self, data):
        self.data, self.pos = data, 0

    def take(self, n, what):
        if n > len(self.data) - self.pos:
            fail("Truncated", what)
        b = self.data[self.pos:self.pos + n]
        self.pos += n
        return b

    def u8(self, what):
        return self.take(1, what)[0]

    def varint(self, what):
        """Unsigned LEB128, at most 10 bytes, minimal, fitting in 64 bits (§1)."""
        v = 0
        for i in range(10):
            b = self.u8(what)
            v |= (b & 0x7F) << (7 * i)
            if b < 0x80:
                if b == 0 and i > 0:
                    fail("Malformed", f"{what}: varint not minimally encoded")
                if v > MASK64:
                    fail("Malformed", f"{what}: varint over 64 bits")
                return v
        fail("Malformed", f"{what}: varint longer than 10 bytes")

    def zigzag(self, what):
        z = self.varint(what)
        return (z >> 1) ^ -(z & 1)


MAGIC = b"hsd"
VERSION = 2
MAX_RAW = 1 << 20
CREDIT_BASE = 1 << 21
OP_END, OP_COPY, OP_INSERT, OP_LIT_ZSTD, OP_LIT_RAW = 0, 1, 2, 3, 4
DEFAULT_MAX_OUTPUT = 1 << 33
ZSTD_MAGIC = (0xFD2FB528).to_bytes(4, "little")


def zstd_frame(comp):
    """(length, Frame_Content_Size or None) of the zstd frame that starts comp,
    which lacks its magic number (RFC 8878 §3.1.1: header, blocks, checksum)."""
    def need(pos):
        if pos > len(comp):
            fail("Malformed", "literal chunk: zstd frame longer than comp_len")

    need(1)
    fhd = comp[0]
    fcs_flag, single, checksum, dict_flag = fhd >> 6, fhd >> 5 & 1, fhd >> 2 & 1, fhd & 3
    if fhd & 0x08:
        fail("Malformed", "literal chunk: zstd frame header's reserved bit set")
    pos = 1 + (0 if single else 1) + (0, 1, 2, 4)[dict_flag]
    fcs_size = (single, 2, 4, 8)[fcs_flag]
    need(pos + fcs_size)
    fcs = None
    if fcs_size:
        fcs = int.from_bytes(comp[pos:pos + fcs_size], "little") + (256 if fcs_size == 2 else 0)
    pos += fcs_size
    while True:
        need(pos + 3)
        header = int.from_bytes(comp[pos:pos + 3], "little")
        last, btype, bsize = header & 1, header >> 1 & 3, header >> 3
        if btype == 3:
            fail("Malformed", "literal chunk: reserved zstd block type")
        pos += 3 + (1 if btype == 1 else bsize)
        need(pos)
        if last:
            break
    pos += 4 * checksum
    need(pos)
    return pos, fcs


def decompress_chunk(comp, prefix, raw_len):
    """The literal chunk of §4.2: exactly one magicless zstd frame filling comp,
    decoded with `prefix` as raw-content dictionary to exactly raw_len bytes."""
    length, content_size = zstd_frame(comp)
    if length != len(comp):
        fail("Malformed", "literal chunk: comp_len holds more than one zstd frame")
    if content_size is not None and content_size != raw_len:
        fail("Malformed", f"literal chunk: frame says {content_size} bytes, raw_len {raw_len}")
    dict_ = zstandard.ZstdCompressionDict(prefix, dict_type=zstandard.DICT_TYPE_RAWCONTENT) if prefix else None
    # Any Window_Size (§4.2): decoding into the raw_len bytes needs no window buffer.
    dctx = zstandard.ZstdDecompressor(dict_data=dict_, max_window_size=1 << 31)
    try:
        out = dctx.decompress(ZSTD_MAGIC + comp, max_output_size=raw_len)
    except zstandard.ZstdError as e:
        fail("Malformed", f"literal chunk: zstd: {e}")
    if len(out) != raw_len:
        fail("Malformed", f"literal chunk decodes to {len(out)} bytes, raw_len says {raw_len}")
    return out


def patch(old, delta, max_output=DEFAULT_MAX_OUTPUT, stats=None):
    """Apply `delta` to `old`; the new instance, or DeltaError. `stats`, a
    dict, gets unit_len and the bytes copied from `old` and inserted."""
    r = Reader(delta)
    if r.take(3, "magic") != MAGIC:
        fail("BadMagic", "not an hsync delta")
    version = r.u8("version")
    if version != VERSION:
        fail("UnsupportedVersion", f"delta version {version}")
    unit_len = r.varint("unit_len")
    if not 8 <= unit_len <= 1 << 24:
        fail("Malformed", f"unit_len {unit_len} out of 8..=2^24")
    base_len = r.varint("base_len")
    window_log = r.u8("window_log")
    if not 10 <= window_log <= 22:
        fail("Malformed", f"window_log {window_log} out of 10..=22")
    if base_len != len(old):
        fail("WrongBase", f"delta for a {base_len}-byte base, old instance has {len(old)} bytes")
    W = 1 << window_log
    units = -(-base_len // unit_len)
    if stats is None:
        stats = {}
    stats.update(unit_len=unit_len, copied=0, inserted=0, chunks=0)

    def unit_span(first, count, what):
        if count < 1:
            fail("Malformed", f"{what}: count 0")
        if first < 0 or first + count > units:
            fail("Malformed", f"{what}: units {first}..{first + count} outside 0..{units}")
        return first * unit_len, min((first + count) * unit_len, base_len)

    out = bytearray()
    chunk, chunk_pos = b"", 0  # current literal chunk and how much INSERTs used
    next_unit = 0
    context_used = 0

    def grow(n):
        if len(out) + n > max_output:
            fail("TooLarge", f"output beyond the limit of {max_output} bytes")

    while True:
        op = r.u8("op")
        if op == OP_COPY:
            first = next_unit + r.zigzag("COPY first")
            count = r.varint("COPY count")
            start, end = unit_span(first, count, "COPY")
            grow(end - start)
            out += old[start:end]
            stats["copied"] += end - start
            next_unit = first + count
        elif op == OP_INSERT:
            n = r.varint("INSERT n")
            if n < 1 or n > len(chunk) - chunk_pos:
                fail("Malformed", f"INSERT {n} with {len(chunk) - chunk_pos} literal bytes left")
            grow(n)
            out += chunk[chunk_pos:chunk_pos + n]
            stats["inserted"] += n
            chunk_pos += n
        elif op in (OP_LIT_ZSTD, OP_LIT_RAW):
            if chunk_pos != len(chunk):
                fail("Malformed", "new literal chunk before the previous one was used up")
            raw_len = r.varint("raw_len")
            if not 1 <= raw_len <= MAX_RAW:
                fail("Malformed", f"raw_len {raw_len} out of 1..=2^20")
            if op == OP_LIT_RAW:
                chunk = r.take(raw_len, "raw literal bytes")
            else:
                credit = CREDIT_BASE + len(out) + raw_len

                def charge(n):
                    nonlocal context_used
                    context_used += n
                    if context_used > credit:
                        fail("TooLarge", "literal context beyond the context credit (§4.2)")

                tail = r.varint("tail")
                if tail > W or tail > len(out):
                    fail("Malformed", f"tail {tail} beyond the window or the output")
                nruns = r.varint("runs")
                spans, prev, run_bytes = [], 0, 0
                for _ in range(nruns):
                    first = prev + r.zigzag("run first")
                    count = r.varint("run count")
                    start, end = unit_span(first, count, "run")
                    run_bytes += end - start
                    if run_bytes > W + unit_len:
                        fail("Malformed", "runs longer than W + unit_len")
                    spans.append((start, end))
                    prev = first + count
                comp_len = r.varint("comp_len")
                comp = r.take(comp_len, "compressed literal bytes")
                charge(tail)
                prefix = bytearray(out[len(out) - tail:])
                for start, end in spans:
                    charge(end - start)
                    prefix += old[start:end]
                chunk = decompress_chunk(comp, bytes(prefix), raw_len)
            chunk_pos = 0
            stats["chunks"] += 1
        elif op == OP_END:
            total_len = r.varint("total_len")
            digest = r.take(32, "digest")
            if r.pos != len(delta):
                fail("Malformed", "bytes after END")
            if chunk_pos != len(chunk):
                fail("Malformed", "literal bytes left unused at END")
            if total_len != len(out):
                fail("DigestMismatch", f"rebuilt {len(out)} bytes, END says {total_len}")
            if blake3(bytes(out)) != digest:
                fail("DigestMismatch", "rebuilt instance is not the one the server sent")
            return bytes(out)
        else:
            fail("Malformed", f"unknown op 0x{op:02x}")


# ---------------------------------------------------------------------------
# Command line

def check_vectors(root):
    """Every case of tests/vectors: signature with sig's seed, patch, bad/*."""
    failures = 0
    for name in sorted(os.listdir(root)):
        case = os.path.join(root, name)
        if not os.path.isfile(os.path.join(case, "delta")):
            continue
        read = lambda f: open(os.path.join(case, f), "rb").read()  # noqa: E731
        old, sig, delta, new = read("old"), read("sig"), read("delta"), read("new")
        seed = int.from_bytes(sig[6:14], "big")
        ok_sig = signature(old, seed) == sig
        try:
            ok_new = patch(old, delta) == new
            result = "ok" if ok_new else "FAILED (wrong bytes)"
        except DeltaError as e:
            ok_new, result = False, f"FAILED ({e})"
        print(f"{name}: signature {'ok' if ok_sig else 'DIFFERS'}, patch {result}")
        failures += (not ok_sig) + (not ok_new)
    bad = os.path.join(root, "bad")
    for name in sorted(os.listdir(bad)):
        case = os.path.join(bad, name)
        old, delta = (open(os.path.join(case, f), "rb").read() for f in ("old", "delta"))
        expect = open(os.path.join(case, "expect")).read().strip()
        try:
            patch(old, delta)
            got, msg = None, "accepted"
        except DeltaError as e:
            got, msg = e.kind, str(e)
        print(f"bad/{name}: {'ok' if got == expect else 'WRONG'} (expected {expect}, got {msg})")
        failures += got != expect
    print(f"{'all vectors pass' if failures == 0 else f'{failures} failures'}")
    return failures == 0


def main(argv):
    import argparse
    p = argparse.ArgumentParser(prog="hsync_spec.py", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("signature", help="write the signature of OLD to SIG")
    s.add_argument("--seed", type=lambda v: int(v, 0), help="seed of the block checks (default: random)")
    s.add_argument("--sub", metavar="LOG:BITS", help="add sub-blocks: 2^LOG per block, checks of BITS bits (§3.4)")
    s.add_argument("old")
    s.add_argument("sig")
    a = sub.add_parser("patch", help="apply DELTA to OLD, verify, write NEW")
    a.add_argument("--max-output", type=int, default=DEFAULT_MAX_OUTPUT, help="refuse to rebuild more bytes (TooLarge)")
    a.add_argument("-v", "--verbose", action="store_true", help="print what the delta copied and inserted to stderr")
    a.add_argument("old")
    a.add_argument("delta")
    a.add_argument("new")
    v = sub.add_parser("vectors", help="check the implementation against tests/vectors")
    v.add_argument("dir")
    args = p.parse_args(argv)

    if args.cmd == "signature":
        seed = args.seed if args.seed is not None else int.from_bytes(os.urandom(8), "big")
        if not 0 <= seed <= MASK64:
            p.error("seed must fit in 64 bits")
        sub_log, sub_bits = map(int, args.sub.split(":")) if args.sub else (0, 0)
        with open(args.old, "rb") as f:
            old = f.read()
        try:
            sig = signature(old, seed, sub_log, sub_bits)
        except ValueError as e:
            p.error(str(e))
        if len(sig) > SIG_MAX:
            print(f"hsync_spec.py: warning: a {len(sig)}-byte signature is over the servers' default limit of {SIG_MAX}",
                  file=sys.stderr)
        with open(args.sig, "wb") as f:
            f.write(sig)
        return 0
    if args.cmd == "patch":
        with open(args.old, "rb") as f:
            old = f.read()
        with open(args.delta, "rb") as f:
            delta = f.read()
        stats = {}
        try:
            new = patch(old, delta, args.max_output, stats)
        except DeltaError as e:
            print(f"hsync_spec.py: {args.delta}: {e}", file=sys.stderr)
            return 1
        if args.verbose:
            print("unit_len {unit_len} copied {copied} inserted {inserted} chunks {chunks}".format(**stats), file=sys.stderr)
        with open(args.new, "wb") as f:
            f.write(new)
        return 0
    return 0 if check_vectors(args.dir) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
