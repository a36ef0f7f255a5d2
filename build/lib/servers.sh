# Sourced by the build/bench-* scripts and build/soak (not run by itself):
# private nginx and Apache httpd instances on loopback, with or without the
# hsync module, and the small helpers the scripts measure them with.
# Needs $root (the source tree).
#
#   free_port                   a free loopback TCP port
#   b64url FILE                 FILE's bytes in base64url without padding (an Hsync-Signature)
#   need_pkgs PKG...            installs the Debian packages that are missing
#   nginx_conf DIR MODULE [WORKERS] <HTTP
#                               writes DIR/nginx.conf: the module loaded when MODULE is 1,
#                               WORKERS worker processes (default 1), pid, error log
#                               ($nginx_log_level, default notice) and temporary files in DIR,
#                               no access log unless HTTP has one; HTTP (stdin) goes inside
#                               http { }: directives and server blocks
#   nginx_start DIR             runs /usr/sbin/nginx on DIR/nginx.conf (in the foreground, in
#                               the background of the calling shell); waits for its pid file
#   nginx_stop DIR              stops it (if its pid file is there) and waits until it has exited
#   apache_conf CONF PORT DOCROOT MODULE <LINES
#                               writes CONF for Debian's httpd (mpm_event): ServerRoot and
#                               pid file in CONF's directory, error log error-NAME.log beside
#                               it (NAME: CONF's name without .conf), $apache_procs children
#                               (default 1) of $apache_threads threads (default 64), never
#                               recycled; DOCROOT served; mod_hsync loaded when MODULE is 1;
#                               $apache_modules (name:file ...) loaded too; LINES appended
#   apache_start CONF           starts httpd on CONF and waits until it answers on PORT
#   apache_stop CONF            stops it and waits until it has exited
#   workers PID                 the worker processes (children) of a server whose master is PID
#   rss_kib PID                 VmRSS of PID, KiB

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

b64url() {
  python3 -c 'import base64,sys; print(base64.urlsafe_b64encode(open(sys.argv[1],"rb").read()).decode().rstrip("="))' "$1"
}

need_pkgs() {
  local missing=() p sudo=""
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  [ ${#missing[@]} -gt 0 ] || return 0
  [ "$(id -u)" -eq 0 ] || sudo=sudo
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
    || { $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; }
}

nginx_conf() {
  local dir="$1" module="$2" workers="${3:-1}" body
  body="$(cat)"
  {
    [ "$module" = 1 ] && echo "load_module $root/target/modules/ngx_http_hsync_module.so;"
    [ "$(id -u)" = 0 ] && echo "user root root;"
    cat <<CONF
daemon off; master_process on; worker_processes $workers;
pid $dir/nginx.pid; error_log $dir/error.log ${nginx_log_level:-notice};
events { worker_connections 1024; }
http {
    types { text/html html; application/atom+xml atom; }
    client_body_temp_path $dir/t; proxy_temp_path $dir/t; fastcgi_temp_path $dir/t;
    uwsgi_temp_path $dir/t; scgi_temp_path $dir/t;
CONF
    # "access_log off" would silence an access_log of the caller's at the same level
    case "$body" in *access_log*) ;; *) echo "    access_log off;" ;; esac
    echo "$body"
    echo "}"
  } >"$dir/nginx.conf"
}

nginx_start() {
  local dir="$1"
  rm -f "$dir/nginx.pid"
  /usr/sbin/nginx -p "$dir" -c "$dir/nginx.conf" -e "$dir/error.log" </dev/null >/dev/null 2>&1 &
  for _ in $(seq 100); do [ -s "$dir/nginx.pid" ] && break; sleep 0.05; done
  [ -s "$dir/nginx.pid" ] || { echo "nginx did not start: $dir/error.log" >&2; tail -5 "$dir/error.log" >&2; return 1; }
  sleep 0.2
}

nginx_stop() {
  local p
  p="$(cat "$1/nginx.pid" 2>/dev/null)" || return 0
  if kill -TERM "$p" 2>/dev/null; then
    # our child: reaped by wait; otherwise wait fails at once and we poll
    wait "$p" 2>/dev/null || while kill -0 "$p" 2>/dev/null; do sleep 0.05; done
  fi
  rm -f "$1/nginx.pid"   # nginx removes it; not when it was killed
}

apache_conf() {
  local conf="$1" port="$2" docroot="$3" module="$4" dir name m
  dir="$(dirname "$conf")"; name="$(basename "$conf" .conf)"
  local procs="${apache_procs:-1}" threads="${apache_threads:-64}"
  {
    echo "ServerRoot \"$dir\""
    echo "ServerName 127.0.0.1"
    echo "Listen 127.0.0.1:$port"
    echo "PidFile \"$dir/httpd.pid\""
    echo "DefaultRuntimeDir \"$dir\""
    echo "ErrorLog \"$dir/error-$name.log\""
    echo "LogLevel warn"
    for m in mpm_event:mod_mpm_event unixd:mod_unixd log_config:mod_log_config authz_core:mod_authz_core \
             mime:mod_mime filter:mod_filter deflate:mod_deflate ${apache_modules:-}; do
      echo "<IfModule !${m%%:*}_module>"
      echo "  LoadModule ${m%%:*}_module /usr/lib/apache2/modules/${m#*:}.so"
      echo "</IfModule>"
    done
    [ "$module" = 1 ] && echo "LoadModule hsync_module \"$root/target/modules/mod_hsync.so\""
    [ "$(id -u)" -eq 0 ] && printf 'User nobody\nGroup nogroup\n'
    echo "ServerLimit $procs"
    echo "StartServers $procs"
    echo "ThreadLimit $threads"
    echo "ThreadsPerChild $threads"
    echo "MaxRequestWorkers $((procs * threads))"
    echo "MinSpareThreads 1"
    echo "MaxSpareThreads $((procs * threads))"
    echo "MaxConnectionsPerChild 0"
    echo "KeepAlive On"
    echo "MaxKeepAliveRequests 0"
    echo "TypesConfig /etc/mime.types"
    echo "AddType text/html .html"
    echo "AddType application/atom+xml .atom"
    echo "DocumentRoot \"$docroot\""
    echo "<Directory \"$docroot\">"
    echo "  Require all granted"
    echo "</Directory>"
    cat
  } >"$conf"
}

apache_start() {
  local port
  port="$(awk '/^Listen/ {sub(/.*:/, "", $2); print $2}' "$1")"
  /usr/sbin/apache2 -f "$1" -k start
  for _ in $(seq 100); do
    curl -s -o /dev/null "http://127.0.0.1:$port/" && return 0
    sleep 0.05
  done
  echo "httpd did not answer on port $port ($1)" >&2
  return 1
}

apache_stop() {
  local pid
  pid="$(cat "$(dirname "$1")/httpd.pid" 2>/dev/null || true)"
  /usr/sbin/apache2 -f "$1" -k stop || true
  while [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
}

workers() { [ -z "$1" ] || pgrep -P "$1" | sort -n; }

rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
