//! The nginx arm of the server harness: the stock `/usr/sbin/nginx`
//! (override with `HSYNC_NGINX`) with `target/modules/ngx_http_hsync_module.so`.

use crate::{free_port, temp_dir, Options, RunningServer, ServerKind};
use std::fmt::Write;
use std::path::Path;
use std::process::{Command, Stdio};

pub fn binary() -> String {
    std::env::var("HSYNC_NGINX").unwrap_or_else(|_| "/usr/sbin/nginx".into())
}

/// The nginx.conf for `opts` listening on `port`, with everything in `dir`.
pub fn config(opts: &Options, dir: &Path, port: u16) -> String {
    let d = dir.display();
    let mut c = String::new();
    if opts.module {
        writeln!(c, "load_module {};", ServerKind::Nginx.module().display()).unwrap();
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        c.push_str("user root root;\n");
    }
    write!(
        c,
        "daemon off;
master_process on;
worker_processes {workers};
pid {d}/nginx.pid;
error_log {d}/error.log info;

events {{
    worker_connections 1024;
}}

http {{
    types {{
        text/html html;
        text/plain txt;
        application/atom+xml atom;
        application/rss+xml rss;
    }}
    default_type application/octet-stream;

    log_format hsync '$remote_addr \"$request\" $status $bytes_sent {ratio}{coding}{proto}';
    access_log {d}/access.log hsync;

    client_body_temp_path {d}/client_body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;

    sendfile on;
    keepalive_timeout 5s;
",
        workers = opts.workers,
        ratio = if opts.module { "$hsync_ratio" } else { "-" },
        coding = if opts.module { " coding=$hsync_coding" } else { "" },
        // Over TLS, whether the request came over HTTP/2 ($http2: "h2" or empty).
        proto = if opts.tls.is_some() { " h2=$http2" } else { "" },
    )
    .unwrap();
    if opts.module {
        c.push_str("    hsync on;\n");
        if let Some(m) = opts.max_signature {
            writeln!(c, "    hsync_max_signature {m};").unwrap();
        }
        if !opts.vary {
            c.push_str("    hsync_vary off;\n");
        }
        if let Some(dict) = &opts.dictionary {
            c.push_str("    hsync_dictionary on;\n");
            write!(c, "    hsync_dictionary_store {d}/store").unwrap();
            if let Some(max) = dict.store_max {
                write!(c, " max_size={max}").unwrap();
            }
            c.push_str(";\n");
            if let Some(p) = &dict.pattern {
                writeln!(c, "    hsync_dictionary_match \"{}\";", p.replace('\\', "\\\\").replace('"', "\\\"")).unwrap();
            }
        }
    }
    if opts.module && opts.feed {
        c.push_str("    hsync_feed on;\n");
    }
    if opts.module && opts.feed_implicit {
        c.push_str("    hsync_feed_implicit on;\n");
    }
    if opts.gzip {
        c.push_str("    gzip on;\n");
    }
    let listen = match &opts.tls {
        None => String::new(),
        Some(t) => format!(
            " ssl{};\n        ssl_certificate {};\n        ssl_certificate_key {}",
            if t.http2 { " http2" } else { "" },
            t.cert.display(),
            t.key.display()
        ),
    };
    write!(
        c,
        "
    server {{
        listen 127.0.0.1:{port}{listen};
        root {root};

        location / {{
        }}

        location /pre/ {{
            add_header Content-Encoding gzip;
        }}

        location /nt/ {{
            add_header Cache-Control no-transform;
        }}

        location /fresh/ {{
            expires 1h;
        }}

        location /off/ {{
{off}        }}
",
        root = opts.docroot.display(),
        off = if opts.module { "            hsync off;\n" } else { "" },
    )
    .unwrap();
    if let Some(up) = opts.upstream {
        write!(
            c,
            "
        location /proxy/ {{
            proxy_pass http://{up}/;
        }}
"
        )
        .unwrap();
    }
    c.push_str("    }\n}\n");
    c
}

/// Starts nginx for `opts` (see [`crate::start`]).
pub fn start(opts: &Options) -> RunningServer {
    start_edited(opts, |c| c)
}

/// Starts nginx with the configuration for `opts` passed through `edit`
/// (e.g. a directive added to a location, to make a deliberately broken
/// server for tests/check.rs).
pub fn start_edited(opts: &Options, edit: impl Fn(String) -> String) -> RunningServer {
    let mut last = String::new();
    for _ in 0..3 {
        let dir = temp_dir("nginx");
        let port = free_port();
        let conf = dir.join("nginx.conf");
        std::fs::write(&conf, edit(config(opts, &dir, port))).unwrap();
        let error_log = dir.join("error.log");
        let mut cmd = Command::new(binary());
        cmd.arg("-p")
            .arg(&dir)
            .arg("-c")
            .arg(&conf)
            .arg("-e")
            .arg(&error_log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let pid = dir.join("nginx.pid");
        match RunningServer::spawn(ServerKind::Nginx, dir.clone(), cmd, port, Some(&pid), error_log, dir.join("access.log")) {
            Ok(s) => return s,
            Err(e) if e.contains("Address already in use") => last = e,
            Err(e) => panic!("{e}"),
        }
    }
    panic!("{last}")
}
