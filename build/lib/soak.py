#!/usr/bin/env python3
"""The request mix and the checks of build/soak (run by it, not by hand).

  soak.py setup   DIR MODE             docroots: DIR/www (the server's), DIR/origin (the upstream's)
  soak.py prepare DIR MODE PORT ORIGIN builds the mix, sends every distinct request and checks
                                       the answer byte for byte; writes DIR/mix.json, DIR/mix.lua
                                       (for wrk and build/lib/soak.lua) and DIR/head.tsv (for ab)
  soak.py verify  DIR                  sends every distinct request again: the same outcomes
  soak.py wrk     DIR CONNECTIONS      reads wrk's output (stdin): counts, errors; exit 1 on any
  soak.py ab      FILE...              ab's outputs: complete, failed, non-2xx; exit 1 on any failure
  soak.py rotate  DIR STOPFILE         (proxy) publishes the next version of every page each second
  soak.py check   DIR MODE PORT [STOPFILE]
                                       end-to-end checks: `hsync get` against the server (a page
                                       changed under it comes back as a delta, byte-exact), or pages
                                       through the proxy; repeated until STOPFILE exists
  soak.py malloc  FILE [CACHED]        malloc_info(3)'s XML: bytes in use, bytes free but kept, and
                                       CACHED (hsync_cached_bytes() in the process; -1 unknown)
  soak.py rss     DIR                  worker RSS and fds from DIR/samples, malloc's bytes in use
                                       from DIR/heap.txt: exit 1 unless flat over the second half

MODE is server (nginx or Apache with the module, a plain nginx as upstream
under /up/) or proxy (`hsync proxy` in front of an nginx with the module
whose pages change every second). Environment: HSYNC (the hsync binary),
HSYNC_CORPUS (the corpus).
"""

import base64
import gzip
import hashlib
import http.client
import json
import os
import random
import re
import socket
import subprocess
import sys
import tempfile
import time

HSYNC = os.environ.get("HSYNC", "hsync")
CORPUS = os.environ.get("HSYNC_CORPUS", "../shared/corpus")

# name -> (file name, the corpus versions in order); the server serves the
# last, signatures describe the one before it
PAGES = {
    "blog": ("blog.html", [f"blog-home/{i:03}.html" for i in range(1, 31)]),
    "feed": ("feed.atom", [f"atom-feed/{i:03}.xml" for i in range(1, 31)]),
    "cnn": ("cnn.html", ["pages/cnn/v1.html", "pages/cnn/v2.html"]),
    "igvita": ("igvita.html", ["pages/igvita/v1.html", "pages/igvita/v2.html"]),
    "wiki": ("wiki.html", ["pages/wikipedia-obama/v1.html", "pages/wikipedia-obama/v2.html"]),
}
FLAT_KIB = 1024     # RSS may end this much (or 5 %) above its level half-way
FLAT_FILES = 2      # open files other than sockets this many above theirs
FLAT_SOCKETS = 32   # sockets this many: the pools of upstream connections are not full after warm-up


def die(msg):
    print(f"soak: FAIL: {msg}", file=sys.stderr)
    sys.exit(1)


def version(name, i):
    with open(os.path.join(CORPUS, PAGES[name][1][i]), "rb") as f:
        return f.read()


def old(name):
    return version(name, -2)


def new(name):
    return version(name, -1)


def b64url(b):
    return base64.urlsafe_b64encode(b).decode().rstrip("=")


def signature(data, block_len=None):
    args = [HSYNC, "signature"] + (["--block-len", str(block_len)] if block_len else []) + ["-", "-"]
    return subprocess.run(args, input=data, stdout=subprocess.PIPE, check=True).stdout


def publish(path, data):
    """Replaces path with data atomically (a server never reads half a file)."""
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def setup(d, mode):
    for sub in ("www/check", "www/dict", "origin/check", "origin/fresh"):
        os.makedirs(os.path.join(d, sub), exist_ok=True)
    for name, (fname, _) in PAGES.items():
        for root in ("www", "origin", "origin/fresh"):
            publish(os.path.join(d, root, fname), new(name))
    publish(os.path.join(d, "www/feed-old.atom"), old("feed"))
    for root in ("www/check", "origin/check"):
        for name in ("blog", "feed"):
            publish(os.path.join(d, root, PAGES[name][0]), old(name))
    # the dictionary location starts with the old page: prepare stores it, then the new one
    publish(os.path.join(d, "www/dict/blog.html"), old("blog"))
    os.system(f"chmod -R a+rX {d}")


# ---------------------------------------------------------------- exchanges


def exchange(port, raw, method="GET"):
    """Sends raw bytes on a new connection; returns (status, {lower name: value}, body)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=60)
    try:
        s.sendall(raw)
        r = http.client.HTTPResponse(s, method=method)
        r.begin()
        body = r.read()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, body
    finally:
        s.close()


def key(status, headers, body):
    """What wrk's script compares: status, content coding, body length."""
    return f"{status} {headers.get('content-encoding', '-')} {len(body)}"


def raw_request(method, target, host, headers):
    lines = [f"{method} {target} HTTP/1.1", f"Host: {host}"] + [f"{k}: {v}" for k, v in headers]
    return "\r\n".join(lines) + "\r\n\r\n"


def decoded(headers, body):
    ce = headers.get("content-encoding")
    if ce is None:
        return body
    if ce == "gzip":
        return gzip.decompress(body)
    raise ValueError(f"unexpected Content-Encoding {ce}")


def patched(base, delta):
    with tempfile.TemporaryDirectory() as t:
        for n, b in (("old", base), ("delta", delta)):
            with open(os.path.join(t, n), "wb") as f:
                f.write(b)
        subprocess.run([HSYNC, "patch", f"{t}/old", f"{t}/delta", f"{t}/out"], check=True)
        with open(f"{t}/out", "rb") as f:
            return f.read()


def dcz_decoded(dictionary, body):
    with tempfile.NamedTemporaryFile() as f:
        f.write(dictionary)
        f.flush()
        return subprocess.run(["zstd", "-q", "-d", "-D", f.name], input=body, stdout=subprocess.PIPE, check=True).stdout


LINK = re.compile(rb'<link rel="compression-dictionary" href="[^"]*">')


def check_answer(e, status, headers, body):
    """Raises when the answer to entry e is not the right one."""
    kind, page = e["kind"], e.get("page")
    ce = headers.get("content-encoding")

    def want(cond, what):
        if not cond:
            raise ValueError(f"{what} (status {status}, Content-Encoding {ce}, {len(body)} bytes)")

    if kind == "hsync":
        want(status == 200 and ce == "hsync", "an hsync delta")
        want(patched(old(e["base"]), body) == new(page), "the delta rebuilding the page")
    elif kind == "full":
        want(status == 200 and ce in (None, "gzip"), "the whole page")
        want(ce is None or "gzip" in e["accept"], "no gzip unasked")
        want(decoded(headers, body) == new(page), "the page's bytes")
    elif kind == "range":
        a, b = e["range"]
        want(status == 206 and ce is None and body == new(page)[a:b], "the range")
    elif kind == "notmod":
        want(status == 304 and body == b"", "304 Not Modified")
    elif kind == "feed226":
        # gzip'd for a reader that accepts it (the core codes 226s itself)
        want(status == 226 and (ce is None or (ce == "gzip" and "gzip" in e["accept"])), "226 IM Used")
        feed = decoded(headers, body)
        want(feed.count(b"<entry>") < new(page).count(b"<entry>") and feed.rstrip().endswith(b"</feed>"), "a shorter feed")
    elif kind == "dcz":
        want(status == 200 and ce == "dcz", "dcz")
        want(LINK.sub(b"", dcz_decoded(old(page), body), count=1) == new(page), "dcz decoding to the page (with a <link> inserted)")
    elif kind == "linked":
        want(status == 200 and ce in (None, "gzip"), "the page")
        want(LINK.sub(b"", decoded(headers, body), count=1) == new(page), "the page with a <link> inserted")
    elif kind == "dictfile":
        want(status == 200 and decoded(headers, body) == old(page), "the stored dictionary")
    elif kind == "head":
        want(status == 200 and body == b"" and ce == e["head_ce"], "a HEAD answer")
    elif kind == "proxied":
        want(status == 200 and ce is None, "the page, identity")
        want(body in versions_of(page), "one of the page's versions")
    elif kind == "proxied-range":
        a, b = e["range"]
        want(status == 206 and ce is None and any(v[a:b] == body for v in versions_of(page)), "the range of a version")
    else:
        raise ValueError(f"unknown kind {kind}")


_versions = {}


def versions_of(page):
    if page not in _versions:
        _versions[page] = {version(page, i) for i in range(len(PAGES[page][1]))}
    return _versions[page]


# ---------------------------------------------------------------- the mix


def server_mix(d, port, origin):
    """Requests to a server with the module, with their weights (per 200)."""
    host = f"127.0.0.1:{port}"
    rng = random.Random(16)
    sigs = {p: [signature(old(p)) for _ in range(3)] for p in PAGES}  # random seeds, as a client's
    mix = []

    def add(weight, kind, path, headers=(), page=None, method="GET", **kw):
        e = {"kind": kind, "method": method, "path": path, "page": page, "headers": list(headers), "weight": weight}
        e["accept"] = next((v for k, v in headers if k == "Accept-Encoding"), "")
        e.update(kw)
        mix.append(e)

    def hs(p, i=0, accept="gzip, hsync"):
        return [("Accept-Encoding", accept), ("Hsync-Signature", b64url(sigs[p][i % 3]))]

    # honest deltas: static files, and through proxy_pass
    for p, w in (("blog", 10), ("feed", 4), ("cnn", 5), ("igvita", 4), ("wiki", 1)):
        for i in range(3):
            add(w, "hsync", f"/{PAGES[p][0]}", hs(p, i, ("hsync", "gzip, hsync", "br, gzip, hsync;q=0.5")[i]), p, base=p)
    for p, w in (("blog", 5), ("cnn", 2)):
        for i in range(3):
            add(w, "hsync", f"/up/{PAGES[p][0]}", hs(p, i), p, base=p)
    # a signature of another page: valid, matches nothing
    add(2, "hsync", "/blog.html", hs("igvita"), "blog", base="igvita")
    # base64 padding and whitespace are tolerated
    add(2, "hsync", "/blog.html", [("Accept-Encoding", "hsync"), ("Hsync-Signature", "  " + base64.urlsafe_b64encode(sigs["blog"][0]).decode() + " ")], "blog", base="blog")
    # plain and gzip
    for p, w in (("blog", 8), ("cnn", 4), ("igvita", 4), ("feed", 2), ("wiki", 1)):
        add(w, "full", f"/{PAGES[p][0]}", [], p)
    for p, w in (("blog", 8), ("cnn", 3), ("feed", 2)):
        add(w, "full", f"/{PAGES[p][0]}", [("Accept-Encoding", "gzip, deflate, br")], p)
    add(4, "full", "/up/blog.html", [], "blog")
    add(3, "full", "/up/blog.html", [("Accept-Encoding", "gzip")], "blog")
    # bad signatures: the ordinary response, never an error
    honest = sigs["blog"][0]
    bad = {
        "not base64": "!!not*base64!!",
        "random bytes": b64url(bytes(rng.randrange(256) for _ in range(700))),
        "truncated": b64url(honest[: len(honest) // 2]),
        "truncated by one byte": b64url(honest[:-1]),
        "unknown version": b64url(honest[:2] + b"\x09" + honest[3:]),
        "larger than 4608 bytes": b64url(signature(old("wiki"), 550)),
        "16-byte blocks (refused)": b64url(signature(old("blog")[:1024], 16)),
        "empty": "",
    }
    for what, value in bad.items():
        add(3, "full", "/blog.html", [("Accept-Encoding", "gzip, hsync"), ("Hsync-Signature", value)], "blog", note=what)
    add(2, "full", "/up/blog.html", [("Accept-Encoding", "gzip, hsync"), ("Hsync-Signature", bad["truncated"])], "blog")
    add(2, "full", "/blog.html", [("Accept-Encoding", "gzip"), ("Hsync-Signature", b64url(honest))], "blog", note="signature without hsync")
    add(2, "full", "/blog.html", [("Accept-Encoding", "hsync;q=0, gzip"), ("Hsync-Signature", b64url(honest))], "blog", note="hsync;q=0")
    blog_len, cnn_len = len(new("blog")), len(new("cnn"))
    # Range: left alone (nginx's gzip, and mod_deflate, would answer a 200: the signature alone here)
    add(3, "range", "/blog.html", hs("blog", 0, "hsync") + [("Range", "bytes=0-99")], "blog", range=(0, 100))
    add(2, "range", "/cnn.html", hs("cnn", 1, "hsync") + [("Range", "bytes=1000-")], "cnn", range=(1000, cnn_len))
    add(2, "range", "/up/blog.html", hs("blog", 2, "hsync") + [("Range", "bytes=-500")], "blog", range=(blog_len - 500, blog_len))
    # conditional requests (validators filled in by prepare)
    add(3, "notmod", "/blog.html", hs("blog") + [("If-None-Match", "{etag:/blog.html}")], "blog")
    add(2, "notmod", "/blog.html", [("If-None-Match", "{etag:/blog.html}")], "blog")
    add(2, "notmod", "/cnn.html", [("If-Modified-Since", "{last-modified:/cnn.html}")], "cnn")
    add(2, "hsync", "/blog.html", hs("blog") + [("If-None-Match", '"0-0"')], "blog", base="blog")
    # feeds: only the entries a reader lacks
    add(3, "feed226", "/feed.atom", [("A-IM", "feed"), ("If-None-Match", "{etag:/feed-old.atom}")], "feed")
    add(1, "feed226", "/feed.atom", [("A-IM", "feed"), ("Accept-Encoding", "gzip"), ("If-None-Match", "{etag:/feed-old.atom}")], "feed")
    add(2, "notmod", "/feed.atom", [("A-IM", "feed"), ("If-None-Match", "{etag:/feed.atom}")], "feed")
    # dictionaries (RFC 9842): dcz against the stored old page
    dict_hash = base64.b64encode(hashlib.sha256(old("blog")).digest()).decode()
    add(4, "dcz", "/dict/blog.html", [("Accept-Encoding", "gzip, br, zstd, dcz"), ("Available-Dictionary", f":{dict_hash}:")], "blog")
    add(2, "linked", "/dict/blog.html", [("Accept-Encoding", "gzip, br, zstd, dcz")], "blog")
    add(1, "dictfile", f"/.well-known/hsync/dictionary/{hashlib.sha256(old('blog')).hexdigest()}", [("Accept-Encoding", "gzip")], "blog")
    # HEAD: wrk cannot read HEAD answers (it waits for the body), ab sends these
    heads = [
        {"kind": "head", "method": "HEAD", "path": "/blog.html", "page": "blog", "headers": hs("blog"), "head_ce": "hsync"},
        {"kind": "head", "method": "HEAD", "path": "/blog.html", "page": "blog", "headers": [], "head_ce": None},
        {"kind": "head", "method": "HEAD", "path": "/up/cnn.html", "page": "cnn", "headers": hs("cnn"), "head_ce": "hsync"},
    ]
    return host, mix, heads


def proxy_mix(d, port, origin):
    """Absolute-form requests to `hsync proxy` for the origin's changing pages."""
    mix = []
    for p, w in (("blog", 12), ("feed", 6), ("cnn", 4), ("igvita", 4), ("wiki", 1)):
        url = f"http://{origin}/{PAGES[p][0]}"
        mix.append({"kind": "proxied", "method": "GET", "path": url, "page": p, "headers": [], "weight": w})
        mix.append({"kind": "proxied", "method": "GET", "path": url, "page": p, "weight": w,
                    "headers": [("Accept-Encoding", "gzip, deflate"), ("User-Agent", "soak")]})
    for p in ("blog", "feed"):  # fresh for a second: hits
        mix.append({"kind": "proxied", "method": "GET", "path": f"http://{origin}/fresh/{PAGES[p][0]}", "page": p, "headers": [], "weight": 4})
    mix.append({"kind": "proxied-range", "method": "GET", "path": f"http://{origin}/blog.html", "page": "blog",
                "headers": [("Range", "bytes=0-99")], "range": (0, 100), "weight": 2})
    heads = [{"kind": "head", "method": "HEAD", "path": f"http://{origin}/{PAGES[p][0]}", "page": p, "headers": [], "head_ce": None}
             for p in ("blog", "cnn")]
    return origin, mix, heads


def describe(e):
    """A request in one line, long header values shortened."""
    hs = ", ".join(f"{k}: {v if len(v) < 40 else v[:20] + '...'}" for k, v in e["headers"])
    return f"{e['method']} {e['path']}" + (f" [{hs}]" if hs else "") + (f" ({e['note']})" if e.get("note") else "")


def send(port, host, e):
    raw = raw_request(e["method"], e["path"], host, e["headers"]).encode("latin-1")
    return exchange(port, raw, e["method"])


def fill_validators(port, host, mix):
    cache = {}
    for e in mix:
        for i, (k, v) in enumerate(e["headers"]):
            m = re.fullmatch(r"\{(etag|last-modified):(.*)\}", v)
            if not m:
                continue
            if m.group(2) not in cache:
                _, h, _ = send(port, host, {"method": "GET", "path": m.group(2), "headers": []})
                cache[m.group(2)] = h
            e["headers"][i] = (k, cache[m.group(2)][m.group(1)])


def probe(port, host, e):
    """Sends e, checks the answer; returns (status, coding, length) as wrk's script sees them."""
    status, headers, body = send(port, host, e)
    try:
        check_answer(e, status, headers, body)
    except (ValueError, subprocess.CalledProcessError) as err:
        die(f"{describe(e)}: wanted {err}")
    return str(status), headers.get("content-encoding", "-"), len(body)


def expects(e, key):
    """Whether wrk's key 'status coding length' is an outcome entry e allows."""
    status, ce, length = key.split()
    if (status, ce) != (e["status"], e["ce"]):
        return False
    if "length_range" in e:
        return e["length_range"][0] <= int(length) <= e["length_range"][1]
    return int(length) in e["lengths"]


def prepare(d, mode, port, origin):
    port = int(port)
    host, mix, heads = (server_mix if mode == "server" else proxy_mix)(d, port, origin)
    if mode == "server":
        # the dictionary location: the old page goes through once (stored), then the new one
        send(port, host, {"method": "GET", "path": "/dict/blog.html", "headers": []})
        publish(os.path.join(d, "www/dict/blog.html"), new("blog"))
        send(port, host, {"method": "GET", "path": "/dict/blog.html", "headers": []})
        fill_validators(port, host, mix)
    for e in mix + heads:
        e["raw"] = raw_request(e["method"], e["path"], host, e["headers"])
        outcomes = [probe(port, host, e) for _ in range(2)]  # an outcome must not depend on the moment...
        e["status"], e["ce"] = outcomes[0][:2]
        if any(o[:2] != outcomes[0][:2] for o in outcomes):
            die(f"{describe(e)}: the outcome changes between two requests: {outcomes}")
        if mode == "proxy":
            # the page changes: the length of any of its versions; counted by status
            e["lengths"] = sorted({len(v) for v in versions_of(e["page"])}) if e["kind"] == "proxied" else [outcomes[0][2]]
            e["group"] = e["status"]
        elif e["path"].startswith("/up/") and e["ce"] != "-" or len({o[2] for o in outcomes}) > 1:
            # ...except its length when it is coded as it streams: the encoder (hsync, gzip) flushes
            # where the server does, and a proxied body comes in pieces of any size
            outcomes += [probe(port, host, e) for _ in range(6)]
            lo, hi = min(o[2] for o in outcomes), max(o[2] for o in outcomes)
            slack = max(256, hi // 20)
            e["length_range"] = [max(0, lo - slack), hi + slack]
        else:
            e["lengths"] = [outcomes[0][2]]
    # requests are counted by the outcome they expect: its status, coding and length, or
    # (through the proxy) its status, or (where a length varies) its status and coding
    varying = {(e["status"], e["ce"]) for e in mix if "length_range" in e}
    for e in mix:
        if mode == "server":
            e["group"] = f"{e['status']} {e['ce']} " + ("~" if (e["status"], e["ce"]) in varying else str(e["lengths"][0]))
    with open(os.path.join(d, "mix.json"), "w") as f:
        json.dump({"mode": mode, "port": port, "host": host, "mix": mix, "heads": heads}, f, indent=1)
    # the cycle wrk goes through: each request as often as its weight, shuffled
    cycle = [e for e in mix for _ in range(e["weight"])]
    random.Random(16).shuffle(cycle)

    def lua(s):
        return '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("\r", "\\r").replace("\n", "\\n") + '"'

    with open(os.path.join(d, "mix.lua"), "w") as f:
        f.write("return {\n")
        for e in cycle:
            f.write(f"  {{{lua(e['group'])}, {lua(e['raw'])}}},\n")
        f.write("}\n")
    with open(os.path.join(d, "head.tsv"), "w") as f:
        for e in heads:
            f.write("\t".join([e["path"]] + [f"{k}: {v}" for k, v in e["headers"]]) + "\n")
    kinds = {}
    for e in cycle:
        kinds[e["kind"]] = kinds.get(e["kind"], 0) + 1
    print(f"mix: {len(mix)} distinct requests, a cycle of {len(cycle)} ("
          + ", ".join(f"{k} {n}" for k, n in sorted(kinds.items(), key=lambda x: -x[1]))
          + f"); {len(heads)} HEAD requests for ab; every answer checked")


def verify(d):
    with open(os.path.join(d, "mix.json")) as f:
        m = json.load(f)
    bad = 0
    for e in m["mix"] + m["heads"]:
        status, headers, body = send(m["port"], m["host"], e)
        k = key(status, headers, body)
        try:
            check_answer(e, status, headers, body)
            if not expects(e, k):
                raise ValueError(f"outcome {k}, not as before")
        except (ValueError, subprocess.CalledProcessError) as err:
            print(f"soak: {describe(e)}: {err}", file=sys.stderr)
            bad += 1
    if bad:
        die(f"{bad} of {len(m['mix']) + len(m['heads'])} requests answered differently")
    print(f"verify: the {len(m['mix']) + len(m['heads'])} distinct requests answered right, byte for byte")


# ---------------------------------------------------------------- wrk and ab


def wrk(d, connections):
    with open(os.path.join(d, "mix.json")) as f:
        m = json.load(f)
    entries = m["mix"]
    issued, seen, summary, latency = {}, {}, None, None
    text = sys.stdin.read()
    for line in text.splitlines():
        f = line.split("\t")
        if f[0] != "soak":
            continue
        if f[1] == "issued":
            issued[f[2]] = issued.get(f[2], 0) + int(f[3])
        elif f[1] == "seen":
            seen[f[2]] = seen.get(f[2], 0) + int(f[3])
        elif f[1] == "summary":
            summary = dict(zip(("requests", "us", "bytes", "connect", "read", "write", "status", "timeout"), map(int, f[2:])))
        elif f[1] == "latency":
            latency = [int(x) / 1000 for x in f[2:]]
    if summary is None:
        die("no summary from wrk:\n" + text)
    problems = []
    errors = {k: summary[k] for k in ("connect", "read", "write", "timeout", "status") if summary[k]}
    if errors:
        problems.append("wrk errors: " + ", ".join(f"{k} {n}" for k, n in errors.items()))
    answered, unexpected = {}, {}
    for k, n in seen.items():
        groups = {e["group"] for e in entries if expects(e, k)}
        if len(groups) != 1:  # none: an answer no request should get (never two, by construction)
            unexpected[k] = n
            problems.append(f"{n} unexpected answers: {k}")
            continue
        g = groups.pop()
        answered[g] = answered.get(g, 0) + n
    for g, n in issued.items():
        if answered.get(g, 0) > n:
            problems.append(f"{answered[g]} answers {g} to {n} requests for it")
    # requests sent and never answered: at most one per connection, in flight when wrk stopped
    pending = sum(issued.values()) - sum(seen.values())
    if pending > int(connections):
        problems.append(f"{pending} requests sent and not answered (at most {connections} in flight at the end)")
    if sum(seen.values()) != summary["requests"]:
        problems.append(f"wrk counted {summary['requests']} responses, the script {sum(seen.values())}")
    secs = summary["us"] / 1e6
    statuses = {}
    for k, n in seen.items():
        statuses[k.split()[0]] = statuses.get(k.split()[0], 0) + n
    codings = {}
    for k, n in seen.items():
        codings[k.split()[1]] = codings.get(k.split()[1], 0) + n
    print(f"{summary['requests']} requests in {secs:.1f} s, {summary['requests'] / secs:.0f} req/s, "
          f"{summary['bytes'] / 1e6:.0f} MB; latency p50 {latency[0]:.2f} ms, p99 {latency[1]:.2f} ms, max {latency[2]:.0f} ms")
    print("  statuses: " + ", ".join(f"{s} {n}" for s, n in sorted(statuses.items()))
          + "; codings: " + ", ".join(f"{c} {n}" for c, n in sorted(codings.items(), key=lambda x: -x[1]))
          + f"; errors: {sum(errors.values())}; unexpected answers: {sum(unexpected.values())}")
    if problems:
        die("; ".join(problems))


def ab(*files):
    total = failed = non2xx = 0
    for path in files:
        with open(path) as f:
            text = f.read()
        m = re.search(r"^Complete requests:\s+(\d+)", text, re.M)
        if not m:
            die(f"ab did not finish: {path}\n{text[-2000:]}")
        total += int(m.group(1))
        failed += sum(int(x) for x in re.findall(r"^Failed requests:\s+(\d+)", text, re.M))
        non2xx += sum(int(x) for x in re.findall(r"^Non-2xx responses:\s+(\d+)", text, re.M))
    print(f"HEAD (ab): {total} requests, {failed} failed, {non2xx} non-2xx")
    if failed or non2xx:
        die("HEAD requests failed")


# ---------------------------------------------------------------- the changing origin, end-to-end checks


def rotate(d, stopfile):
    step = 0
    while not os.path.exists(stopfile):
        step += 1
        for name, (fname, files) in PAGES.items():
            data = version(name, step % len(files))
            for root in ("origin", "origin/fresh"):
                publish(os.path.join(d, root, fname), data)
        time.sleep(1)
    # leave every page at its last version
    for name, (fname, files) in PAGES.items():
        for root in ("origin", "origin/fresh"):
            publish(os.path.join(d, root, fname), new(name))
    print(f"rotate: {step} steps, one a second")


def hsync_get(url, cache):
    r = subprocess.run([HSYNC, "get", "-v", "--cache", cache, url], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if r.returncode != 0:
        raise ValueError(f"hsync get {url}: {r.stderr.decode(errors='replace').strip()}")
    return r.stdout, r.stderr.decode(errors="replace")


def check_server(d, port, cache):
    """One round: each checked page changed twice under `hsync get`; returns the number of deltas."""
    deltas = 0
    for root, prefix in (("www", ""), ("origin", "/up")):
        for name in ("blog", "feed"):
            fname = PAGES[name][0]
            url = f"http://127.0.0.1:{port}{prefix}/check/{fname}"
            for data in (new(name), old(name)):
                publish(os.path.join(d, root, "check", fname), data)
                body, log = hsync_get(url, cache)
                if body != data:
                    raise ValueError(f"hsync get {url}: {len(body)} bytes, not the page's {len(data)}")
                deltas += "[DELTA]" in log
    return deltas


def through_proxy(port, url):
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    try:
        s.sendall(raw_request("GET", url, url.split("/")[2], []).encode())
        r = http.client.HTTPResponse(s, method="GET")
        r.begin()
        return r.status, r.read()
    finally:
        s.close()


def check(d, mode, port, stopfile=None):
    with open(os.path.join(d, "mix.json")) as f:
        m = json.load(f)
    port = int(port)
    rounds = deltas = 0
    cache = tempfile.mkdtemp(prefix="cache-", dir=d)
    while True:
        try:
            if mode == "server":
                deltas += check_server(d, port, cache)
            else:
                for name in ("blog", "feed", "cnn"):
                    url = f"http://{m['host']}/{PAGES[name][0]}"
                    status, body = through_proxy(port, url)
                    if status != 200 or body not in versions_of(name):
                        raise ValueError(f"{url} through the proxy: {status}, {len(body)} bytes, not a version of the page")
                    if stopfile is None and body != new(name):  # the origin has stopped changing
                        raise ValueError(f"{url} through the proxy: not the origin's current version")
        except ValueError as err:
            die(f"check: {err}")
        rounds += 1
        if stopfile is None or os.path.exists(stopfile):
            break
        time.sleep(2)
    what = f"{deltas} deltas by `hsync get`" if mode == "server" else "pages through the proxy"
    print(f"check: {rounds} rounds, {what}, byte-exact")


# ---------------------------------------------------------------- RSS


def malloc(path, cached=None):
    """Prints the bytes in use (the arenas' memory less their free chunks, plus
    mmapped chunks), the bytes free but kept, and what the core keeps in its
    bounded caches and pools (hsync_cached_bytes(), read by gdb; -1 unknown)."""
    with open(path) as f:
        xml = f.read()
    tail = xml[xml.rindex("</heap>"):]  # the totals over all arenas

    def total(kind, name):
        m = re.search(rf'<{kind} type="{name}"[^>]*size="(\d+)"', tail)
        return int(m.group(1)) if m else 0

    free = total("total", "fast") + total("total", "rest")
    kept = int(cached) if cached is not None and cached.isdigit() else -1
    print(total("system", "current") - free + total("total", "mmap"), free, kept)


def rss(d):
    """DIR/samples: lines 'time phase pid role rss_kib files sockets anon_kib' (phases start,
    run, warm, mid, end); DIR/heap.txt: lines 'time phase pid role in_use free cached' (bytes;
    cached: what the core keeps in its bounded pools and caches, -1 unknown). Flat: from
    half-way to the end, RSS grows by at most 1 MiB or 5 %, or if it grows more, malloc's
    bytes in use outside the core's caches do not; open files and sockets at most
    FLAT_FILES, FLAT_SOCKETS. The caches are bounded by limits.rs, not by this test: their
    figures are printed for the reader."""
    procs, heap = {}, {}
    with open(os.path.join(d, "samples")) as f:
        for line in f:
            t, phase, pid, role, kib, files, socks, anon = line.split()
            procs.setdefault((role, pid), []).append((float(t), phase, int(kib), int(files), int(socks), int(anon)))
    if os.path.exists(os.path.join(d, "heap.txt")):
        with open(os.path.join(d, "heap.txt")) as f:
            for line in f:
                _, phase, pid, _, in_use, free, cached = line.split()
                cached = int(cached) // 1024 if int(cached) >= 0 else -1
                heap[(pid, phase)] = (int(in_use) // 1024, int(free) // 1024, cached)

    def grows(before, after):
        return after > before + max(FLAT_KIB, before // 20)

    phases = ("start", "warm", "mid", "end")
    bad = []
    for (role, pid), s in sorted(procs.items()):
        at = {x[1]: x for x in s if x[1] in phases}
        if len(at) < len(phases):
            bad.append(f"{role} {pid} did not live through the run (a crash?)")
            continue
        start, warm, mid, end = (at[p] for p in phases)
        late = [x for x in s if mid[0] <= x[0] <= end[0]]
        # the trend over the second half: least squares, KiB per minute
        n = len(late)
        tm, km = sum(x[0] for x in late) / n, sum(x[2] for x in late) / n
        var = sum((x[0] - tm) ** 2 for x in late)
        slope = 60 * sum((x[0] - tm) * (x[2] - km) for x in late) / var if var else 0.0
        peak = max(x[2] for x in s if x[0] >= warm[0])

        def four(i):
            return " / ".join(str(x[i]) for x in (start, warm, mid, end))

        print(f"  {role} {pid}: RSS {start[2]} / {warm[2]} / {mid[2]} / peak {peak} / {end[2]} KiB "
              f"({end[2] - mid[2]:+d} over the second half, trend {slope:+.1f} KiB/min; {end[2] - warm[2]:+d} after warm-up); "
              f"anonymous {four(5)}")
        h = [heap.get((pid, p)) for p in phases]
        known = all(h) and all(x[2] >= 0 for x in h)
        # in use outside the core's bounded caches (all of it when they are unknown)
        other = [x[0] - max(x[2], 0) for x in h] if all(h) else []
        if all(h):
            print(f"    malloc: in use {' / '.join(str(x[0]) for x in h)} KiB ({h[3][0] - h[2][0]:+d} over the second half), "
                  f"free but kept {' / '.join(str(x[1]) for x in h)} KiB")
        if known:
            print(f"    the core's pools and caches {' / '.join(str(x[2]) for x in h)} KiB; in use besides them "
                  f"{' / '.join(str(x) for x in other)} KiB ({other[3] - other[2]:+d} over the second half)")
        fds_flat = end[3] <= mid[3] + FLAT_FILES and end[4] <= mid[4] + FLAT_SOCKETS
        print(f"    open files {four(3)}, sockets {four(4)}: {'flat' if fds_flat else 'GROW'}")
        if not fds_flat:
            bad.append(f"{role} {pid}: files {mid[3]} -> {end[3]}, sockets {mid[4]} -> {end[4]}")
        if not grows(mid[2], end[2]):
            print("    RSS flat")
        elif all(h) and not grows(other[2], other[3]):
            print(f"    RSS grows ({end[2] - mid[2]:+d} KiB), the bytes in use{' besides the core caches' if known else ''} do not: "
                  "memory malloc keeps after free" + (" or the bounded caches filling" if known and h[3][2] > h[2][2] else ""))
        else:
            print("    RSS GROWS" + (", and so do the bytes in use" if all(h) else ""))
            bad.append(f"{role} {pid}: RSS {mid[2]} -> {end[2]} KiB" + (f", in use besides the caches {other[2]} -> {other[3]} KiB" if all(h) else ""))
    if bad:
        die("; ".join(bad))


COMMANDS = {"setup": setup, "prepare": prepare, "verify": verify, "wrk": wrk, "ab": ab,
            "rotate": rotate, "check": check, "malloc": malloc, "rss": rss}


def main():
    if len(sys.argv) < 2 or sys.argv[1] not in COMMANDS:
        die(f"usage: soak.py {'|'.join(COMMANDS)} ... (see the top of {sys.argv[0]})")
    COMMANDS[sys.argv[1]](*sys.argv[2:])


if __name__ == "__main__":
    main()
