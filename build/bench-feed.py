"""The measuring half of build/bench-feed (which builds the module and the
CLI first): one nginx worker with the module, a reader polling every
version of the corpus's Atom feed in five ways, then wrk for the CPU."""

import atexit
import base64
import hashlib
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import time

root, secs = sys.argv[1], int(sys.argv[2])
corpus = os.environ.get("HSYNC_CORPUS", os.path.join(root, "..", "shared", "corpus"))
so = os.path.join(root, "target", "modules", "ngx_http_hsync_module.so")
hsync = os.path.join(root, "target", "release", "hsync")
work = os.path.join(root, "target", "bench-feed")
versions = [open(os.path.join(corpus, "atom-feed", "%03d.xml" % i), "rb").read() for i in range(1, 31)]
commands = []


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


port = free_port()


class Nginx:
    """One nginx with one worker and the http-level directives given."""

    def __init__(self, directives):
        shutil.rmtree(work, ignore_errors=True)
        os.makedirs(os.path.join(work, "www"))
        os.makedirs(os.path.join(work, "store"))
        user = "user root root;" if os.getuid() == 0 else ""
        conf = f"""load_module {so};
{user}
daemon off; master_process on; worker_processes 1;
pid {work}/nginx.pid; error_log {work}/error.log notice;
events {{ worker_connections 1024; }}
http {{
    types {{ application/atom+xml atom; }}
    access_log off;
    client_body_temp_path {work}/t; proxy_temp_path {work}/t; fastcgi_temp_path {work}/t;
    uwsgi_temp_path {work}/t; scgi_temp_path {work}/t;
    sendfile on;
    gzip_types application/atom+xml;
    {directives}
    server {{ listen 127.0.0.1:{port}; root {work}/www; }}
}}
"""
        open(os.path.join(work, "nginx.conf"), "w").write(conf)
        self.directives = directives
        self.proc = subprocess.Popen(
            ["/usr/sbin/nginx", "-p", work, "-c", os.path.join(work, "nginx.conf"), "-e", os.path.join(work, "error.log")],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        # Stopped whatever happens (a failed check raises).
        atexit.register(self.proc.terminate)
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.05)
        self.worker = None
        for _ in range(100):
            kids = subprocess.run(["pgrep", "-P", str(self.proc.pid)], capture_output=True, text=True).stdout.split()
            if kids:
                self.worker = int(kids[0])
                break
            time.sleep(0.05)

    def publish(self, data):
        tmp = os.path.join(work, "www", ".tmp")
        open(tmp, "wb").write(data)
        os.rename(tmp, os.path.join(work, "www", "feed.atom"))

    def cpu_ticks(self):
        f = open("/proc/%d/stat" % self.worker).read().rsplit(")", 1)[1].split()
        return int(f[11]) + int(f[12])  # utime + stime

    def stop(self):
        self.proc.terminate()
        self.proc.wait()
        log = open(os.path.join(work, "error.log")).read()
        bad = [l for l in log.splitlines() if re.search(r"\[(alert|crit|emerg)\]|exited on signal", l)]
        if bad:
            sys.exit("nginx logged:\n" + "\n".join(bad))


class Apache:
    """Debian's httpd, mpm_event, one child of 16 threads, mod_hsync loaded,
    mod_deflate available; the directives given at server level."""

    def __init__(self, directives):
        shutil.rmtree(work, ignore_errors=True)
        os.makedirs(os.path.join(work, "www"))
        mods = "".join(f"<IfModule !{m}_module>\n  LoadModule {m}_module /usr/lib/apache2/modules/mod_{f}.so\n</IfModule>\n"
                       for m, f in (("mpm_event", "mpm_event"), ("unixd", "unixd"), ("authz_core", "authz_core"),
                                    ("mime", "mime"), ("filter", "filter"), ("deflate", "deflate")))
        user = "User nobody\nGroup nogroup\n" if os.getuid() == 0 else ""
        conf = f"""ServerRoot "{work}"
ServerName 127.0.0.1
Listen 127.0.0.1:{port}
PidFile "{work}/httpd.pid"
DefaultRuntimeDir "{work}"
ErrorLog "{work}/error.log"
LogLevel warn
{mods}LoadModule hsync_module "{os.path.join(root, 'target', 'modules', 'mod_hsync.so')}"
{user}ServerLimit 1
StartServers 1
ThreadLimit 16
ThreadsPerChild 16
MaxRequestWorkers 16
MinSpareThreads 1
MaxSpareThreads 16
MaxConnectionsPerChild 0
KeepAlive On
MaxKeepAliveRequests 0
TypesConfig /etc/mime.types
AddType application/atom+xml .atom
DocumentRoot "{work}/www"
<Directory "{work}/www">
  Require all granted
</Directory>
{directives}
"""
        self.conf = os.path.join(work, "httpd.conf")
        open(self.conf, "w").write(conf)
        self.directives = directives.replace("\n", "; ")
        subprocess.run(["/usr/sbin/apache2", "-f", self.conf, "-k", "start"], check=True)
        atexit.register(lambda: subprocess.run(["/usr/sbin/apache2", "-f", self.conf, "-k", "stop"], capture_output=True))
        self.worker = None
        for _ in range(200):
            try:
                master = int(open(os.path.join(work, "httpd.pid")).read())
                kids = subprocess.run(["pgrep", "-P", str(master)], capture_output=True, text=True).stdout.split()
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                if kids:
                    self.worker = int(kids[0])
                    break
            except (OSError, ValueError):
                pass
            time.sleep(0.05)
        assert self.worker, "httpd did not start"

    publish = Nginx.publish
    cpu_ticks = Nginx.cpu_ticks

    def stop(self):
        subprocess.run(["/usr/sbin/apache2", "-f", self.conf, "-k", "stop"], check=True)
        for _ in range(200):
            if not os.path.exists(os.path.join(work, "httpd.pid")):
                break
            time.sleep(0.05)
        log = open(os.path.join(work, "error.log")).read()
        bad = [l for l in log.splitlines() if re.search(r":(crit|alert|emerg)\]|exit signal", l)]
        if bad:
            sys.exit("httpd logged:\n" + "\n".join(bad))


def request(headers):
    """GET /feed.atom over one connection: (status, headers dict, body,
    bytes of the whole response, bytes of the request)."""
    req = "GET /feed.atom HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
    req += "".join(f"{k}: {v}\r\n" for k, v in headers) + "\r\n"
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(req.encode())
    data = b""
    while True:
        b = s.recv(1 << 16)
        if not b:
            break
        data += b
    s.close()
    head, body = data.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    h = {}
    for l in lines[1:]:
        k, v = l.split(":", 1)
        h[k.strip().lower()] = v.strip()
    if h.get("transfer-encoding") == "chunked":
        out, rest = b"", body
        while True:
            n, rest = rest.split(b"\r\n", 1)
            n = int(n, 16)
            if n == 0:
                break
            out, rest = out + rest[:n], rest[n + 2 :]
        body = out
    return status, h, body, len(data), len(req)


def decoded(h, body):
    enc = h.get("content-encoding")
    if enc == "gzip":
        import gzip

        return gzip.decompress(body)
    assert enc is None, enc
    return body


def b64url(b):
    return base64.urlsafe_b64encode(b).decode().rstrip("=")


def signature(data):
    old, sig = os.path.join(work, "old"), os.path.join(work, "sig")
    open(old, "wb").write(data)
    subprocess.run([hsync, "signature", old, sig], check=True)
    return b64url(open(sig, "rb").read())


def patch(old, delta):
    p = [os.path.join(work, n) for n in ("p.old", "p.delta", "p.new")]
    open(p[0], "wb").write(old)
    open(p[1], "wb").write(delta)
    subprocess.run([hsync, "patch", p[0], p[1], p[2]], check=True)
    return open(p[2], "rb").read()


def undcz(dictionary, body):
    """RFC 9842 §4: a 40-byte header (a zstd skippable frame holding the
    dictionary's SHA-256), then a zstd frame made with the dictionary;
    decoded with the zstd CLI."""
    assert body[:8] == b"\x5e\x2a\x4d\x18\x20\x00\x00\x00", body[:8]
    assert body[8:40] == hashlib.sha256(dictionary).digest(), "dcz against another version than the reader's"
    d = [os.path.join(work, n) for n in ("dict", "dcz")]
    open(d[0], "wb").write(dictionary)
    open(d[1], "wb").write(body[40:])
    return subprocess.run(["zstd", "-q", "-d", "-c", "--long=31", "-D", d[0], d[1]], check=True, capture_output=True).stdout


def entries(doc):
    """(id, updated) of each entry, by regular expression: enough to check
    that a truncated document carries only entries of the version."""
    return re.findall(rb"<entry>.*?<id>(.*?)</id>.*?<updated>(.*?)</updated>", doc, re.S)


def bytes_per_poll():
    """Each reader polls every version once, starting with the first."""
    ng = Nginx(
        f"gzip on; hsync on; hsync_feed on; hsync_feed_implicit on;\n"
        f"    hsync_dictionary on; hsync_dictionary_store {work}/store max_size=64m;"
    )
    modes = ["whole, gzip'd", "explicit A-IM: feed (226)", "implicit (truncated 200)", "hsync delta", "dcz"]
    totals = {m: [0, 0] for m in modes}  # [response bytes, extra request bytes]
    statuses = {m: {} for m in modes}
    tags = {m: None for m in modes}
    held = {m: None for m in modes}
    for k, v in enumerate(versions):
        ng.publish(v)
        for m in modes:
            h = [("Accept-Encoding", "gzip")]
            extra = 0
            if m.startswith("explicit"):
                h.append(("A-IM", "feed"))
            if m.startswith("hsync") and held[m] is not None:
                sig = signature(held[m])
                h = [("Accept-Encoding", "hsync, gzip"), ("Hsync-Signature", sig)]
                extra = len("Hsync-Signature: \r\n") + len(sig)
            if m == "dcz":
                h = [("Accept-Encoding", "gzip, br, zstd, dcz")]
                if held[m] is not None:
                    av = ":%s:" % base64.b64encode(hashlib.sha256(held[m]).digest()).decode()
                    h.append(("Available-Dictionary", av))
                    extra = len("Available-Dictionary: \r\n") + len(av)
            # The whole feed as readers get it today: every version differs,
            # so a conditional request would get it whole too (but the
            # implicit mode, on for this server, would truncate it).
            if tags[m] is not None and m.startswith(("explicit", "implicit")):
                h.append(("If-None-Match", tags[m]))
            status, rh, body, wire, _ = request(h)
            statuses[m][status] = statuses[m].get(status, 0) + 1
            enc = rh.get("content-encoding")
            if enc == "hsync":
                got = patch(held[m], body)
            elif enc == "dcz":
                got = undcz(held[m], body)
            else:
                got = decoded(rh, body)
            if status == 200 and not m.startswith("implicit"):
                assert got == v, f"{m}: version {k + 1}: a 200 that is not the version"
            if status == 226 or (m.startswith("implicit") and status == 200 and got != v):
                assert set(entries(got)) <= set(entries(v)), f"{m}: version {k + 1}: an entry not in the version"
            totals[m][0] += wire
            totals[m][1] += extra
            tags[m] = rh.get("etag", tags[m])
            held[m] = v
    ng.stop()
    return modes, totals, statuses


def wrk(ng, label, headers, expect):
    """One wrk run on the last version: req/s and worker CPU per response."""
    status, h, body, _, _ = request(headers)
    assert (status, h.get("content-encoding")) == expect, (label, status, h)
    cmd = ["wrk", "-t1", "-c8", f"-d{secs}s"] + [a for k, v in headers for a in ("-H", f"{k}: {v}")]
    cmd.append(f"http://127.0.0.1:{port}/feed.atom")
    t0 = ng.cpu_ticks()
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    ticks = ng.cpu_ticks() - t0
    n = int(re.search(r"(\d+) requests in", out).group(1))
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)|Socket errors: (.*)", out)
    assert errors is None or status == 304 or "Non-2xx" not in errors.group(0), out
    cpu = ticks / os.sysconf("SC_CLK_TCK") / n * 1e6
    print(f"  {label:58} {rps:>9,.0f} req/s  {cpu:7.0f} µs CPU/response  {len(body):>7,} bytes")
    shown = [re.sub(r'"hf1\.[^"]*"', "<ETag>", c) for c in cmd]
    server = "httpd" if isinstance(ng, Apache) else "nginx"
    commands.append(" ".join(shlex.quote(c) for c in shown) + f"   # {server}: {ng.directives or 'defaults'}")


def measure(server, configs, gzip):
    """wrk runs on version 30 for each (directives, runs) of `configs`; runs
    None: feeds on, the tags of 29 and 30 taken first. `gzip` names the
    server's gzip in the labels."""
    old, new = versions[-2], versions[-1]
    for directives, runs in configs:
        sv = server(directives)
        if runs is None:
            sv.publish(old)
            tag29 = request([])[1]["etag"]
            sv.publish(new)
            tag30 = request([])[1]["etag"]
            runs = [
                ("feeds on: whole, as it is (parsed, tagged)", [], (200, None)),
                (f"feeds on: whole, {gzip}", [("Accept-Encoding", "gzip")], (200, "gzip")),
                ("feeds on: 226 (A-IM: feed, tag of 29), gzip'd by the core", [("A-IM", "feed"), ("If-None-Match", tag29), ("Accept-Encoding", "gzip")], (226, "gzip")),
                (f"feeds on: truncated 200 (implicit, tag of 29), {gzip}", [("If-None-Match", tag29), ("Accept-Encoding", "gzip")], (200, "gzip")),
                ("feeds on: 304 (tag of 30)", [("If-None-Match", tag30)], (304, None)),
            ]
        else:
            sv.publish(new)
        for label, headers, expect in runs:
            wrk(sv, label, headers, expect)
        sv.stop()


def cpu_per_response():
    print(f"(2) server CPU per response, version 30 ({len(versions[-1]):,} bytes), the reader holding 29; "
          f"wrk -t1 -c8 -d{secs}s, one nginx worker (utime+stime / responses)")
    gz = [("Accept-Encoding", "gzip")]
    measure(Nginx, [
        ("", [("feeds off: whole, as it is (sendfile)", [], (200, None))]),
        ("gzip on;", [("feeds off: whole, gzip level 1 (nginx's default)", gz, (200, "gzip"))]),
        ("gzip on; gzip_comp_level 6;", [("feeds off: whole, gzip level 6", gz, (200, "gzip"))]),
        ("gzip on; hsync_feed on; hsync_feed_implicit on;", None),
    ], "gzip level 1")


def cpu_per_response_apache():
    print(f"(3) the same on Apache: wrk -t1 -c8 -d{secs}s, one httpd child of 16 threads (its utime+stime / responses); "
          "gzip by mod_deflate at its default level (6)")
    deflate = "AddOutputFilterByType DEFLATE application/atom+xml"
    feeds = "AddOutputFilterByType HSYNC application/atom+xml\nHsyncFeed On\nHsyncFeedImplicit On"
    measure(Apache, [
        ("", [("feeds off: whole, as it is", [], (200, None))]),
        (deflate, [("feeds off: whole, mod_deflate", [("Accept-Encoding", "gzip")], (200, "gzip"))]),
        (feeds + "\n" + deflate, None),
    ], "mod_deflate")


def main():
    print(f"hsync feed benchmark, {time.strftime('%Y-%m-%dT%H:%MZ', time.gmtime())}, "
          f"{subprocess.run(['/usr/sbin/nginx', '-v'], capture_output=True, text=True).stderr.strip()}, {os.cpu_count()} CPUs")
    print(f"feed: ../shared/corpus/atom-feed, 30 versions ({min(map(len, versions)):,}-{max(map(len, versions)):,} bytes)")
    print()
    if sys.argv[3:] == ["apache"]:  # only (3)
        cpu_per_response_apache()
        return
    modes, totals, statuses = bytes_per_poll()
    print("(1) bytes for one reader polling every version (30 polls; the first is a whole feed for all)")
    whole = sum(totals["whole, gzip'd"])
    for m in modes:
        t = sum(totals[m])
        st = ", ".join(f"{n}x{s}" for s, n in sorted(statuses[m].items()))
        print(f"  {m:32} {t:>10,} bytes  {t / whole:6.3f} of gzip'd whole  (request extra {totals[m][1]:,}; {st})")
    print()
    cpu_per_response()
    print()
    cpu_per_response_apache()
    print()
    print("commands:")
    for c in commands:
        print("  $ " + c)


main()
