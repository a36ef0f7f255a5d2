/*
 * mod_hsync.c — Apache httpd 2.4 output filter "HSYNC": sends a response as
 * an hsync delta against the client's cached copy (Content-Encoding: hsync).
 *
 * A thin shim over the hsync core (core/include/hsync.h, ABI 4). It hands
 * the core every request header line and every response header line httpd
 * will send, applies the header edits the core returns (whatever it
 * decided), and moves the body through the encoder. Every decision and every
 * header value (Vary, ETag, Content-Encoding, what is removed) is the
 * core's, the same code the nginx module calls.
 *
 *   LoadModule hsync_module modules/mod_hsync.so
 *   AddOutputFilterByType HSYNC text/html      (or SetOutputFilter HSYNC)
 *   HsyncMinLength 256
 *   HsyncMaxSignature 4608
 *   HsyncCompressionLevel 0                    (0 = the core's default)
 *   HsyncVary On
 *   HsyncDictionary On                         (RFC 9842 dictionaries, dcz)
 *   HsyncDictionaryStore /var/cache/apache2/hsync 64M
 *   HsyncDictionaryMatch PATTERN               (default: the page's own path)
 *   HsyncFeed On                               (RFC 3229 A-IM: feed, 226 IM Used)
 *   HsyncFeedImplicit On                       (truncated 200s for If-None-Match)
 *   HsyncFeedTypes application/atom+xml ...
 *   LogFormat "... %{hsync_ratio}n %{hsync_coding}n" ...
 *
 * Dictionaries (RFC 9842): with HsyncDictionary On the core may engage a
 * response whatever its coding: dcz (against a stored version the browser
 * names), or identity, only to copy the body into the version store and/or
 * insert a <link rel="compression-dictionary"> into an HTML head. The
 * filter moves every engaged body through hsync_encode alike. The module's
 * own URLs (/.well-known/hsync/dictionary/<sha-256 hex>) are answered by a
 * handler that runs first (hsync_dictionary_handler, see there why there).
 *
 * Feeds (docs/protocol.md section 8): with HsyncFeed or HsyncFeedImplicit
 * On, a feed response (hsync_feed_check) is held: its buckets are set
 * aside and nothing goes downstream, headers included (at most
 * HSYNC_FEED_MAX_BYTES: past it, everything goes on as it came); at its EOS
 * the core answers with the status (200, 226 or 304), the header edits and
 * the body (hsync_feed_process). A whole 200 or a 304 then goes through
 * the hsync/dcz decision like any response; a 226 or a truncated 200 does
 * not. mod_deflate, after this filter, sees the feed step's answer.
 *
 * Ordering with mod_deflate: the filter is registered one step before
 * AP_FTYPE_CONTENT_SET (where DEFLATE and BROTLI_COMPRESS sit). When it
 * engages, the response carries Content-Encoding: hsync and mod_deflate
 * steps aside; when it does not, mod_deflate compresses as usual.
 *
 * 304 responses: mod_filter (AddOutputFilterByType) runs its providers on
 * status 200 only, unless "filter-errordocs" is set. So that HSYNC still
 * sees a 304 when its type matches (and gives it the validators an hsync
 * response would have had), an insert_filter hook brackets mod_filter's
 * BYTYPE:HSYNC filter with two small filters that set that variable for it
 * alone on a 304. HEAD responses have status 200 and reach HSYNC anyway;
 * one given the fields of the hsync GET has its (identity) body dropped, so
 * that httpd does not compute a Content-Length from it.
 */

#include "httpd.h"
#include "http_config.h"
#include "http_core.h"
#include "http_log.h"
#include "http_request.h"
#include "http_protocol.h"
#include "util_filter.h"
#include "apr_strings.h"
#include "apr_buckets.h"
#include "apr_file_info.h"
#include "apr_uri.h"
#include "unixd.h"

#include <errno.h>
#include <limits.h>
#include <unistd.h>

#include "hsync.h"

APLOG_USE_MODULE(hsync);

static const char hsync_filter_name[] = "HSYNC";
static const char hsync_note_ratio[] = "hsync_ratio";
static const char hsync_note_coding[] = "hsync_coding";
/* mod_filter's name for the filter of `AddOutputFilterByType HSYNC ...` */
static const char hsync_bytype_name[] = "BYTYPE:HSYNC";
static const char errordocs_env[] = "filter-errordocs";

#define HSYNC_MSG_CAP 256
#define UNSET_U64 ((apr_uint64_t)-1)
#define UNSET_INT INT_MIN

static ap_filter_rec_t *nm_open_rec, *nm_close_rec;

/* ------------------------------------------------------------------ config */

typedef struct {
    apr_uint64_t min_length;     /* UNSET_U64 = inherit */
    apr_uint64_t max_signature;  /* UNSET_U64 = inherit */
    int level;                   /* UNSET_INT = inherit */
    int vary;                    /* UNSET_INT = inherit */
    int dictionary;              /* HsyncDictionary; UNSET_INT = inherit */
    const char *dict_match;      /* HsyncDictionaryMatch; NULL = inherit */
    int feed;                    /* HsyncFeed; UNSET_INT = inherit */
    int feed_implicit;           /* HsyncFeedImplicit; UNSET_INT = inherit */
    const char *feed_types;      /* HsyncFeedTypes, words joined by spaces; NULL = inherit */
    /* Server level only (HsyncDictionaryStore): */
    const char *store;           /* absolute directory; NULL = inherit */
    apr_uint64_t store_max;      /* UNSET_U64 = inherit */
    /* "HsyncDictionary On" appears somewhere in this server's sections
     * (server, <VirtualHost>, <Directory>, <Location>): checked against the
     * store at startup, since per-directory configs are only merged per
     * request. */
    int dictionary_seen;
} hsync_dir_conf;

static void *create_hsync_config(apr_pool_t *p, char *dummy)
{
    hsync_dir_conf *c = apr_pcalloc(p, sizeof(*c));
    (void)dummy;
    c->min_length = UNSET_U64;
    c->max_signature = UNSET_U64;
    c->level = UNSET_INT;
    c->vary = UNSET_INT;
    c->dictionary = UNSET_INT;
    c->feed = UNSET_INT;
    c->feed_implicit = UNSET_INT;
    c->store_max = UNSET_U64;
    return c;
}

static void *merge_hsync_config(apr_pool_t *p, void *basev, void *addv)
{
    hsync_dir_conf *base = basev, *add = addv;
    hsync_dir_conf *c = apr_pcalloc(p, sizeof(*c));
    c->min_length = add->min_length != UNSET_U64 ? add->min_length : base->min_length;
    c->max_signature = add->max_signature != UNSET_U64 ? add->max_signature : base->max_signature;
    c->level = add->level != UNSET_INT ? add->level : base->level;
    c->vary = add->vary != UNSET_INT ? add->vary : base->vary;
    c->dictionary = add->dictionary != UNSET_INT ? add->dictionary : base->dictionary;
    c->dict_match = add->dict_match ? add->dict_match : base->dict_match;
    c->feed = add->feed != UNSET_INT ? add->feed : base->feed;
    c->feed_implicit = add->feed_implicit != UNSET_INT ? add->feed_implicit : base->feed_implicit;
    c->feed_types = add->feed_types ? add->feed_types : base->feed_types;
    c->store = add->store ? add->store : base->store;
    c->store_max = add->store_max != UNSET_U64 ? add->store_max : base->store_max;
    /* a <Directory> of the main server applies inside virtual hosts too */
    c->dictionary_seen = add->dictionary_seen || base->dictionary_seen;
    return c;
}

static void *create_hsync_server_config(apr_pool_t *p, server_rec *s)
{
    (void)s;
    return create_hsync_config(p, NULL);
}

static void *merge_hsync_server_config(apr_pool_t *p, void *basev, void *addv)
{
    return merge_hsync_config(p, basev, addv);
}

/* The core's defaults, overridden by what `d` (then `s`) sets. */
static void effective_config(const hsync_dir_conf *d, const hsync_dir_conf *s, hsync_config *out)
{
    hsync_config_default(out);
    if (d && d->min_length != UNSET_U64)          out->min_length = d->min_length;
    else if (s && s->min_length != UNSET_U64)     out->min_length = s->min_length;
    if (d && d->max_signature != UNSET_U64)       out->max_signature = d->max_signature;
    else if (s && s->max_signature != UNSET_U64)  out->max_signature = s->max_signature;
    if (d && d->level != UNSET_INT)               out->level = d->level;
    else if (s && s->level != UNSET_INT)          out->level = s->level;
    if (d && d->vary != UNSET_INT)                out->vary = d->vary;
    else if (s && s->vary != UNSET_INT)           out->vary = s->vary;
    if (d && d->dictionary != UNSET_INT)          out->dictionary = d->dictionary;
    else if (s && s->dictionary != UNSET_INT)     out->dictionary = s->dictionary;
    if (d && d->dict_match)                       out->dict_match = d->dict_match;
    else if (s && s->dict_match)                  out->dict_match = s->dict_match;
    if (out->dict_match)                          out->dict_match_len = strlen(out->dict_match);
    if (d && d->feed != UNSET_INT)                out->feed = d->feed;
    else if (s && s->feed != UNSET_INT)           out->feed = s->feed;
    if (d && d->feed_implicit != UNSET_INT)       out->feed_implicit = d->feed_implicit;
    else if (s && s->feed_implicit != UNSET_INT)  out->feed_implicit = s->feed_implicit;
    if (d && d->feed_types)                       out->feed_types = d->feed_types;
    else if (s && s->feed_types)                  out->feed_types = s->feed_types;
    if (out->feed_types)                          out->feed_types_len = strlen(out->feed_types);
    /* The store is the server's (one directory shared by its children). */
    if (s && s->store) {
        out->store = s->store;
        out->store_len = strlen(s->store);
    }
    if (s && s->store_max != UNSET_U64)           out->store_max = s->store_max;
}

static const char *parse_int(cmd_parms *cmd, const char *arg, apr_int64_t min, apr_int64_t max,
                             apr_int64_t *out)
{
    char *end;
    apr_int64_t v;

    errno = 0;
    v = apr_strtoi64(arg, &end, 10);
    if (errno || *arg == '\0' || *end != '\0' || v < min || v > max) {
        return apr_psprintf(cmd->pool, "%s must be %s integer, not '%s'", cmd->cmd->name,
                            min == 0 ? "a non-negative" : "an", arg);
    }
    *out = v;
    return NULL;
}

/* Every value is checked by the core (hsync_config_check: the same limits
 * and words as the nginx module), here for each directive so that the
 * error names its line, and again per server in post_config. */
static const char *core_check(apr_pool_t *p, const hsync_config *c)
{
    char msg[HSYNC_MSG_CAP];
    msg[0] = '\0';
    if (hsync_config_check(c, msg, sizeof(msg)) != HSYNC_OK) {
        return apr_psprintf(p, "hsync: %s", msg[0] ? msg : "invalid configuration");
    }
    return NULL;
}

/* The directives work at server level and in <Directory>/<Location>/.htaccess
 * (FileInfo); server-level values are stored in both configs so that
 * virtual hosts inherit them through the usual merges. */
enum { SET_MIN_LENGTH, SET_MAX_SIGNATURE, SET_LEVEL, SET_VARY, SET_FEED, SET_FEED_IMPLICIT };

static void store(hsync_dir_conf *t, int what, apr_int64_t v)
{
    switch (what) {
    case SET_MIN_LENGTH:    t->min_length = (apr_uint64_t)v; break;
    case SET_MAX_SIGNATURE: t->max_signature = (apr_uint64_t)v; break;
    case SET_LEVEL:         t->level = (int)v; break;
    case SET_FEED:          t->feed = (int)v; break;
    case SET_FEED_IMPLICIT: t->feed_implicit = (int)v; break;
    default:                t->vary = (int)v; break;
    }
}

static const char *set_value(cmd_parms *cmd, hsync_dir_conf *d, int what, apr_int64_t v)
{
    hsync_dir_conf *s = cmd->path ? NULL : ap_get_module_config(cmd->server->module_config, &hsync_module);
    hsync_dir_conf *alone = create_hsync_config(cmd->temp_pool, NULL);
    hsync_config c;
    const char *err;

    store(alone, what, v);
    effective_config(alone, NULL, &c);
    if ((err = core_check(cmd->pool, &c)) != NULL) return err;
    store(d, what, v);
    if (s) store(s, what, v);
    return NULL;
}

static const char *set_number(cmd_parms *cmd, void *dcfg, const char *arg)
{
    int what = (int)(apr_uintptr_t)cmd->info;
    apr_int64_t v;
    const char *err = what == SET_LEVEL ? parse_int(cmd, arg, INT_MIN + 1, INT_MAX, &v)
                                        : parse_int(cmd, arg, 0, APR_INT64_MAX, &v);
    return err ? err : set_value(cmd, dcfg, what, v);
}

static const char *set_flag(cmd_parms *cmd, void *dcfg, int on)
{
    return set_value(cmd, dcfg, (int)(apr_uintptr_t)cmd->info, on ? 1 : 0);
}

/* HsyncFeedTypes TYPE...: the media types that are feeds, kept as one
 * string of the words joined by spaces, which the core reads and checks
 * (the same words as nginx's hsync_feed_types). */
static const char *set_feed_types(cmd_parms *cmd, void *dcfg, int argc, char *const argv[])
{
    hsync_dir_conf *d = dcfg;
    hsync_dir_conf *s = cmd->path ? NULL : ap_get_module_config(cmd->server->module_config, &hsync_module);
    hsync_dir_conf *alone = create_hsync_config(cmd->temp_pool, NULL);
    const char *types = "", *err;
    hsync_config c;
    int i;

    if (argc < 1) return apr_pstrcat(cmd->pool, cmd->cmd->name, " takes at least one media type", NULL);
    for (i = 0; i < argc; i++) {
        types = i ? apr_pstrcat(cmd->pool, types, " ", argv[i], NULL) : apr_pstrdup(cmd->pool, argv[i]);
    }
    alone->feed_types = types;
    effective_config(alone, NULL, &c);
    if ((err = core_check(cmd->pool, &c)) != NULL) return err;
    d->feed_types = types;
    if (s) s->feed_types = types;
    return NULL;
}

/* HsyncDictionary On|Off: at server level (stored in both configs, as
 * above) and in <Directory>/<Location>, not in .htaccess: the store is the
 * server's, and every place that turns dictionaries on is known at startup,
 * where it is checked against HsyncDictionaryStore (hsync_check_config). */
static const char *set_dictionary(cmd_parms *cmd, void *dcfg, int on)
{
    hsync_dir_conf *d = dcfg;
    hsync_dir_conf *s = ap_get_module_config(cmd->server->module_config, &hsync_module);
    d->dictionary = on ? 1 : 0;
    if (!cmd->path) s->dictionary = d->dictionary;
    if (on) s->dictionary_seen = 1;
    return NULL;
}

static const char *set_dict_match(cmd_parms *cmd, void *dcfg, const char *arg)
{
    hsync_dir_conf *d = dcfg;
    hsync_dir_conf *s = ap_get_module_config(cmd->server->module_config, &hsync_module);
    d->dict_match = arg;
    if (!cmd->path) s->dict_match = arg;
    return NULL;
}

/* "64M": bytes, with an optional K, M or G (powers of 1024). */
static const char *parse_size(cmd_parms *cmd, const char *arg, apr_uint64_t *out)
{
    char *end;
    apr_int64_t v;
    apr_uint64_t mult = 1;

    errno = 0;
    v = apr_strtoi64(arg, &end, 10);
    if (end != arg) {
        switch (*end) {
        case 'k': case 'K': mult = (apr_uint64_t)1 << 10; end++; break;
        case 'm': case 'M': mult = (apr_uint64_t)1 << 20; end++; break;
        case 'g': case 'G': mult = (apr_uint64_t)1 << 30; end++; break;
        default: break;
        }
    }
    if (errno || end == arg || *end != '\0' || v < 0 || (apr_uint64_t)v > APR_UINT64_MAX / mult) {
        return apr_psprintf(cmd->pool, "%s: the size must be a number of bytes with an optional K, M or G, "
                            "not '%s'", cmd->cmd->name, arg);
    }
    *out = (apr_uint64_t)v * mult;
    return NULL;
}

/* HsyncDictionaryStore PATH [SIZE]: server config and virtual hosts. A
 * relative PATH is taken from ServerRoot, as httpd does for its other
 * paths. The pair is checked by the core here, so that an error names
 * this line (the same words as the nginx module). */
static const char *set_store(cmd_parms *cmd, void *dcfg, const char *path, const char *size)
{
    hsync_dir_conf *s = ap_get_module_config(cmd->server->module_config, &hsync_module);
    hsync_dir_conf *alone = create_hsync_config(cmd->temp_pool, NULL);
    apr_uint64_t max = HSYNC_STORE_MAX_DEFAULT;
    const char *dir, *err;
    hsync_config c;
    (void)dcfg;

    if ((err = ap_check_cmd_context(cmd, NOT_IN_DIR_LOC_FILE)) != NULL) return err;
    dir = ap_server_root_relative(cmd->pool, path);
    if (!dir) return apr_pstrcat(cmd->pool, cmd->cmd->name, ": invalid path ", path, NULL);
    if (size && (err = parse_size(cmd, size, &max)) != NULL) return err;
    alone->store = dir;
    alone->store_max = max;
    effective_config(NULL, alone, &c);
    c.dictionary = 1;
    if ((err = core_check(cmd->pool, &c)) != NULL) return err;
    s->store = dir;
    s->store_max = max;
    return NULL;
}

static const command_rec hsync_cmds[] = {
    AP_INIT_TAKE1("HsyncMinLength", set_number, (void *)SET_MIN_LENGTH, RSRC_CONF | ACCESS_CONF | OR_FILEINFO,
                  "Responses with a known length below this many bytes are sent as they are (default 256)"),
    AP_INIT_TAKE1("HsyncMaxSignature", set_number, (void *)SET_MAX_SIGNATURE, RSRC_CONF | ACCESS_CONF | OR_FILEINFO,
                  "Largest decoded Hsync-Signature accepted, in bytes (default 4608; 64 to 65536)"),
    AP_INIT_TAKE1("HsyncCompressionLevel", set_number, (void *)SET_LEVEL, RSRC_CONF | ACCESS_CONF | OR_FILEINFO,
                  "zstd level for literal bytes, 1-22; 0 = the core's default"),
    AP_INIT_FLAG("HsyncVary", set_flag, (void *)SET_VARY, RSRC_CONF | ACCESS_CONF | OR_FILEINFO,
                 "On (default): responses hsync could apply to say Vary: Accept-Encoding, Hsync-Signature "
                 "also when it did not"),
    AP_INIT_FLAG("HsyncFeed", set_flag, (void *)SET_FEED, RSRC_CONF | ACCESS_CONF | OR_FILEINFO,
                 "On: answer A-IM: feed with 226 IM Used and only the entries the reader lacks "
                 "(RFC 3229; default Off)"),
    AP_INIT_FLAG("HsyncFeedImplicit", set_flag, (void *)SET_FEED_IMPLICIT, RSRC_CONF | ACCESS_CONF | OR_FILEINFO,
                 "On: a request without A-IM whose If-None-Match names an older version of a feed "
                 "gets a 200 with the new entries only (default Off)"),
    AP_INIT_TAKE_ARGV("HsyncFeedTypes", set_feed_types, NULL, RSRC_CONF | ACCESS_CONF | OR_FILEINFO,
                      "The media types that are feeds (default application/atom+xml application/rss+xml application/x-rss+xml)"),
    AP_INIT_FLAG("HsyncDictionary", set_dictionary, NULL, RSRC_CONF | ACCESS_CONF,
                 "On: compression dictionaries for browsers (RFC 9842 dcz), with the version store of "
                 "HsyncDictionaryStore (default Off)"),
    AP_INIT_TAKE12("HsyncDictionaryStore", set_store, NULL, RSRC_CONF,
                   "The version store's directory, shared by the children, and its bound in bytes "
                   "(K, M or G; default 64M)"),
    AP_INIT_TAKE1("HsyncDictionaryMatch", set_dict_match, NULL, RSRC_CONF | ACCESS_CONF,
                  "The URL pattern a page announces its dictionary for (default: the page's own path)"),
    { NULL }
};

/* Startup: the linked core must speak the ABI this file was compiled
 * against, and every server's settings must pass the core's check. A
 * check_config hook, so that `apachectl configtest` (`apache2 -t`, which
 * stops before post_config) fails too. HsyncDictionary On anywhere in a
 * server without a store is the core's error "dictionaries need a version
 * store: ...", the same words as nginx's. */
static int hsync_check_config(apr_pool_t *pconf, apr_pool_t *plog, apr_pool_t *ptemp, server_rec *base)
{
    server_rec *s;
    (void)pconf; (void)plog;

    if (hsync_abi_version() != HSYNC_ABI_VERSION) {
        ap_log_error(APLOG_MARK, APLOG_EMERG, 0, base,
                     "hsync: the linked core has ABI version %u, this module was built for %u",
                     (unsigned)hsync_abi_version(), (unsigned)HSYNC_ABI_VERSION);
        return HTTP_INTERNAL_SERVER_ERROR;
    }
    for (s = base; s; s = s->next) {
        hsync_dir_conf *sc = ap_get_module_config(s->module_config, &hsync_module);
        hsync_config c;
        const char *err;
        effective_config(NULL, sc, &c);
        if (sc->dictionary_seen) c.dictionary = 1;
        if ((err = core_check(ptemp, &c)) != NULL) {
            ap_log_error(APLOG_MARK, APLOG_EMERG, 0, s, "%s", err);
            return HTTP_INTERNAL_SERVER_ERROR;
        }
    }
    return OK;
}

/* Hands a path of the store to the children's user. */
static void give_to_children(server_rec *s, const char *path)
{
    if (geteuid() != 0) return;   /* not root: the children are this user */
    if (chown(path, ap_unixd_config.user_id, ap_unixd_config.group_id) != 0 && errno != ENOENT) {
        ap_log_error(APLOG_MARK, APLOG_WARNING, errno, s,
                     "hsync: cannot hand %s to the user httpd's children run as", path);
    }
}

/* The version store, once per server with one, in the parent (as root,
 * before the children drop privileges, as mod_cgid does for its socket):
 * the directory is created if missing, with the subdirectories the core
 * would create on first use (Store::open in core/src/store/mod.rs: v/, p/,
 * tmp/), and those and the files it keeps at the top (lock, ledger) are
 * chowned to User/Group. The children, which write the store, open it
 * themselves; the core makes every file below v/, p/ and tmp/ as the
 * children's user, so nothing deeper needs a chown. A directory that cannot
 * be created stops httpd here rather than turning dictionaries off in
 * every child. */
static int hsync_post_config(apr_pool_t *pconf, apr_pool_t *plog, apr_pool_t *ptemp, server_rec *base)
{
    static const char *const subdirs[] = { "v", "p", "tmp", NULL };
    static const char *const files[] = { "lock", "ledger", NULL };
    server_rec *s;
    (void)pconf; (void)plog;

    for (s = base; s; s = s->next) {
        hsync_dir_conf *sc = ap_get_module_config(s->module_config, &hsync_module);
        const char *const *n;
        apr_status_t rv;
        if (!sc->store) continue;
        rv = apr_dir_make_recursive(sc->store, APR_FPROT_OS_DEFAULT, ptemp);
        if (rv != APR_SUCCESS && !APR_STATUS_IS_EEXIST(rv)) {
            ap_log_error(APLOG_MARK, APLOG_EMERG, rv, s,
                         "hsync: cannot create the version store %s", sc->store);
            return HTTP_INTERNAL_SERVER_ERROR;
        }
        give_to_children(s, sc->store);
        for (n = subdirs; *n; n++) {
            const char *sub = apr_pstrcat(ptemp, sc->store, "/", *n, NULL);
            rv = apr_dir_make(sub, APR_FPROT_OS_DEFAULT, ptemp);
            if (rv != APR_SUCCESS && !APR_STATUS_IS_EEXIST(rv)) {
                ap_log_error(APLOG_MARK, APLOG_WARNING, rv, s, "hsync: cannot create %s", sub);
            }
            give_to_children(s, sub);
        }
        for (n = files; *n; n++) {
            give_to_children(s, apr_pstrcat(ptemp, sc->store, "/", *n, NULL));
        }
        ap_log_error(APLOG_MARK, APLOG_DEBUG, 0, s, "hsync: version store %s (%" APR_UINT64_T_FMT
                     " bytes at most)", sc->store,
                     sc->store_max != UNSET_U64 ? sc->store_max : (apr_uint64_t)HSYNC_STORE_MAX_DEFAULT);
    }
    return OK;
}

/* ------------------------------------------------------------------ filter */

typedef struct {
    hsync_response *resp;     /* engaged; NULL once done */
    apr_bucket_brigade *bb;   /* output on its way to the next filter */
    int done;
    int head;                 /* a HEAD standing for an hsync GET: no body */
    int hold_tail;            /* sent with its length: keep the last bucket until the EOS */
    /* Feeds: a response held (nothing goes downstream) until its EOS */
    int feed_hold;
    apr_bucket_brigade *feed_bb;   /* the body so far, set aside */
    apr_size_t feed_len;
} hsync_ctx;

static apr_status_t hsync_ctx_cleanup(void *data)
{
    hsync_ctx *ctx = data;
    if (ctx->resp) {
        hsync_response_free(ctx->resp);
        ctx->resp = NULL;
    }
    return APR_SUCCESS;
}

static void push_field(apr_array_header_t *a, const char *name, const char *value)
{
    hsync_field *f = apr_array_push(a);
    f->name = name;
    f->name_len = strlen(name);
    f->value = value ? value : "";
    f->value_len = value ? strlen(value) : 0;
}

static int add_request_field(void *a, const char *name, const char *value)
{
    push_field(a, name, value);
    return 1;
}

typedef struct {
    request_rec *r;
    apr_array_header_t *a;
} response_fields;

static int add_response_field(void *data, const char *name, const char *value)
{
    response_fields *rf = data;
    /* ap_http_header_filter sends these from the request_rec instead */
    if ((rf->r->content_type && !strcasecmp(name, "Content-Type"))
        || (rf->r->content_encoding && !strcasecmp(name, "Content-Encoding"))) {
        return 1;
    }
    push_field(rf->a, name, value);
    return 1;
}

/* httpd keeps its own copies of three fields in the request_rec: the type
 * and coding it sends from there, the length it reads back (r->clength). */
static void sync_request_rec(request_rec *r, const char *name, const char *value)
{
    if (!strcasecmp(name, "Content-Encoding")) {
        r->content_encoding = value;
    }
    else if (!strcasecmp(name, "Content-Type")) {
        r->content_type = value;
    }
    else if (!strcasecmp(name, "Content-Length")) {
        apr_off_t len = 0;
        char *end;
        if (!value || apr_strtoff(&len, value, &end, 10) != APR_SUCCESS || *end != '\0' || len < 0) {
            len = 0;
        }
        r->clength = len;
    }
}

/* The core's edits, applied as they are: SET replaces every line of the
 * field with one, REMOVE removes every line, APPEND adds one line and keeps
 * the others (a dictionary's `Link` beside the response's own). */
static void apply_edits(request_rec *r, const hsync_response *resp)
{
    const hsync_edit *e = NULL;
    size_t i, n = hsync_response_edits(resp, &e);

    for (i = 0; i < n; i++) {
        const char *name = apr_pstrmemdup(r->pool, e[i].name, e[i].name_len);
        const char *value = NULL;
        if (e[i].op == HSYNC_EDIT_APPEND) {
            apr_table_addn(r->headers_out, name, apr_pstrmemdup(r->pool, e[i].value, e[i].value_len));
            continue;
        }
        apr_table_unset(r->headers_out, name);
        apr_table_unset(r->err_headers_out, name);
        if (e[i].op == HSYNC_EDIT_SET) {
            value = apr_pstrmemdup(r->pool, e[i].value, e[i].value_len);
            apr_table_setn(r->headers_out, name, value);
        }
        sync_request_rec(r, name, value);
    }
}

/* Whether the edits take the length away (an hsync GET's fields). */
static int edits_remove_length(const hsync_response *resp)
{
    const hsync_edit *e = NULL;
    size_t i, n = hsync_response_edits(resp, &e);
    for (i = 0; i < n; i++) {
        if (e[i].op == HSYNC_EDIT_REMOVE && e[i].name_len == 14
            && !strncasecmp(e[i].name, "Content-Length", 14)) {
            return 1;
        }
    }
    return 0;
}

/* The request target for the core (path and query, as the client sent
 * it): r->unparsed_uri, which internal fast redirects (mod_dir's
 * DirectoryIndex) leave alone, so that a page is stored and found under
 * the URL the browser uses. A request in absolute form ("GET http://host/p")
 * gives its path and query, as nginx's $request_uri does. */
static const char *request_target(request_rec *r)
{
    if (r->unparsed_uri && r->unparsed_uri[0] != '/' && r->parsed_uri.hostname) {
        return apr_uri_unparse(r->pool, &r->parsed_uri, APR_URI_UNP_OMITSITEPART);
    }
    return r->unparsed_uri ? r->unparsed_uri : "";
}

/* Marks a request whose response the dictionary handler made, so that the
 * filter (on text/html, a stored page's type) leaves it as it is. */
static int served_by_hsync(request_rec *r)
{
    return ap_get_module_config(r->request_config, &hsync_module) != NULL;
}

/* The exchange the core reads: every request line and every response line
 * httpd will send (the arrays in the request's pool). */
static void build_exchange(request_rec *r, hsync_exchange *x)
{
    apr_array_header_t *req;
    response_fields res;

    req = apr_array_make(r->pool, 16, sizeof(hsync_field));
    apr_table_do(add_request_field, req, r->headers_in, NULL);

    /* The lines in the order ap_http_header_filter sends them:
     * err_headers_out, then headers_out, then the request_rec's fields. */
    res.r = r;
    res.a = apr_array_make(r->pool, 16, sizeof(hsync_field));
    apr_table_do(add_response_field, &res, r->err_headers_out, NULL);
    apr_table_do(add_response_field, &res, r->headers_out, NULL);
    if (r->content_type) push_field(res.a, "Content-Type", r->content_type);
    if (r->content_encoding) push_field(res.a, "Content-Encoding", r->content_encoding);

    memset(x, 0, sizeof(*x));
    x->method = r->method;
    x->method_len = strlen(r->method);
    x->request = (const hsync_field *)req->elts;
    x->request_len = (size_t)req->nelts;
    x->status = (unsigned)r->status;
    x->uri = request_target(r);
    x->uri_len = strlen(x->uri);
    x->response = (const hsync_field *)res.a->elts;
    x->response_len = (size_t)res.a->nelts;
    x->content_length = -1;   /* httpd keeps it in the Content-Length line */
}

/* The one decision, on the first call: every request line and every
 * response line httpd will send go to the core; its edits are applied
 * whatever it decided. HSYNC_OK: engaged, *out holds the encoder. A HEAD
 * given the fields of the hsync GET also gets a context (ctx->head), which
 * drops the identity body the handler sends: ap_content_length_filter
 * would otherwise put its length back (it counts a HEAD's body too, and
 * removes only a length of 0, in ap_http_header_filter). */
static int hsync_start(ap_filter_t *f, hsync_ctx **out)
{
    request_rec *r = f->r;
    hsync_config cfg;
    hsync_exchange x;
    hsync_response *resp = NULL;
    char msg[HSYNC_MSG_CAP];
    hsync_ctx *ctx;
    int rc;

    /* Sub-requests (includes) are part of their main response. */
    if (r->main) return HSYNC_DECLINED;
    /* A dictionary the handler below sent: it is the stored bytes. */
    if (served_by_hsync(r)) {
        ap_log_rerror(APLOG_MARK, APLOG_DEBUG, 0, r, "hsync: a dictionary response, left as it is");
        return HSYNC_DECLINED;
    }

    effective_config(ap_get_module_config(r->per_dir_config, &hsync_module),
                     ap_get_module_config(r->server->module_config, &hsync_module), &cfg);
    build_exchange(r, &x);

    msg[0] = '\0';
    rc = hsync_decide(&cfg, &x, &resp, msg, sizeof(msg));
    if (rc < 0) {
        ap_log_rerror(APLOG_MARK, APLOG_INFO, 0, r, "hsync: %s", msg[0] ? msg : hsync_strerror(rc));
    }
    if (!resp) return rc;
    apply_edits(r, resp);
    ap_log_rerror(APLOG_MARK, APLOG_DEBUG, 0, r, "hsync: decided %s for %s %s (status %d): %s, %u edits",
                  hsync_strerror(rc), r->method, x.uri, r->status,
                  rc == HSYNC_OK ? (*hsync_coding(resp) ? hsync_coding(resp) : "identity (stored or linked)")
                                 : "sent as it is",
                  (unsigned)hsync_response_edits(resp, &(const hsync_edit *){ NULL }));
    if (rc != HSYNC_OK) {
        if (r->header_only && edits_remove_length(resp)) {
            ctx = apr_pcalloc(r->pool, sizeof(*ctx));
            ctx->head = 1;
            *out = ctx;
        }
        hsync_response_free(resp);
        return rc;
    }

    /* The coding for %{hsync_coding}n: "hsync" or "dcz"; none for a body
     * engaged only to be stored or given a link (sent as it is). */
    if (*hsync_coding(resp)) {
        apr_table_setn(r->notes, hsync_note_coding, apr_pstrdup(r->pool, hsync_coding(resp)));
    }
    ctx = apr_pcalloc(r->pool, sizeof(*ctx));
    ctx->resp = resp;
    ctx->bb = apr_brigade_create(r->pool, f->c->bucket_alloc);
    /* (see "the last bucket" in hsync_out_filter) */
    ctx->hold_tail = apr_table_get(r->headers_out, "Content-Length") != NULL;
    apr_pool_cleanup_register(r->pool, ctx, hsync_ctx_cleanup, apr_pool_cleanup_null);
    *out = ctx;
    return HSYNC_OK;
}

/* Feeds one piece to the encoder and queues what comes out. */
static apr_status_t hsync_feed(ap_filter_t *f, hsync_ctx *ctx,
                               const char *data, apr_size_t len, unsigned flags)
{
    const uint8_t *out = NULL;
    size_t out_len = 0;
    int rc = hsync_encode(ctx->resp, (const uint8_t *)data, len, flags, &out, &out_len);

    if (rc != HSYNC_OK) {
        ap_log_rerror(APLOG_MARK, APLOG_ERR, 0, f->r,
                      "hsync: encoding failed, aborting the response: %s",
                      hsync_strerror(rc));
        return APR_EGENERAL;
    }
    if (out_len > 0) {
        /* heap bucket: copies, the core's buffer is reused on the next call */
        apr_bucket *b = apr_bucket_heap_create((const char *)out, out_len, NULL,
                                               f->c->bucket_alloc);
        APR_BRIGADE_INSERT_TAIL(ctx->bb, b);
    }
    return APR_SUCCESS;
}

/* The encoder cannot complete the delta: end the response so that the
 * client sees it truncated, never a corrupt but complete body. The 502
 * error bucket is httpd's mark of a body cut short (the chunk filter leaves
 * out the last chunk); the connection is closed after it. If the headers
 * have not gone yet, the connection is aborted instead, so that no error
 * page goes out in place of the response. */
static apr_status_t hsync_abort(ap_filter_t *f, hsync_ctx *ctx)
{
    apr_bucket *b;
    ctx->done = 1;
    hsync_ctx_cleanup(ctx);
    apr_brigade_cleanup(ctx->bb);
    f->c->keepalive = AP_CONN_CLOSE;
    if (!f->r->sent_bodyct) {
        f->c->aborted = 1;
    }
    b = ap_bucket_error_create(HTTP_BAD_GATEWAY, NULL, f->r->pool, f->c->bucket_alloc);
    APR_BRIGADE_INSERT_TAIL(ctx->bb, b);
    b = apr_bucket_eos_create(f->c->bucket_alloc);
    APR_BRIGADE_INSERT_TAIL(ctx->bb, b);
    ap_pass_brigade(f->next, ctx->bb);
    apr_brigade_cleanup(ctx->bb);
    return APR_EGENERAL;
}

/* The hsync/dcz path: the decision on the first call, then the body. */
static apr_status_t hsync_body(ap_filter_t *f, apr_bucket_brigade *bb)
{
    request_rec *r = f->r;
    hsync_ctx *ctx = f->ctx;
    apr_status_t rv;

    if (APR_BRIGADE_EMPTY(bb)) {
        return APR_SUCCESS;
    }

    if (!ctx) {
        if (hsync_start(f, &ctx) != HSYNC_OK && !ctx) {
            ap_remove_output_filter(f);
            return ap_pass_brigade(f->next, bb);
        }
        f->ctx = ctx;
    }

    if (ctx->head) {
        /* Metadata (EOS, flush, errors) travels on; the bytes do not. */
        apr_bucket *e, *next;
        for (e = APR_BRIGADE_FIRST(bb); e != APR_BRIGADE_SENTINEL(bb); e = next) {
            next = APR_BUCKET_NEXT(e);
            if (!APR_BUCKET_IS_METADATA(e)) {
                apr_bucket_delete(e);
            }
        }
        return ap_pass_brigade(f->next, bb);
    }

    if (ctx->done) {
        /* Anything after EOS (or after an abort) is dropped. */
        apr_brigade_cleanup(bb);
        return APR_SUCCESS;
    }

    while (!APR_BRIGADE_EMPTY(bb)) {
        apr_bucket *e = APR_BRIGADE_FIRST(bb);

        if (APR_BUCKET_IS_EOS(e)) {
            char ratio[32];
            if (hsync_feed(f, ctx, NULL, 0, HSYNC_LAST) != APR_SUCCESS) {
                return hsync_abort(f, ctx);
            }
            if (hsync_ratio(ctx->resp, ratio, sizeof(ratio)) > 0) {
                apr_table_setn(r->notes, hsync_note_ratio, apr_pstrdup(r->pool, ratio));
            }
            if (APLOGrdebug(r)) {
                uint64_t in = 0, out = 0;
                hsync_stats(ctx->resp, &in, &out);
                ap_log_rerror(APLOG_MARK, APLOG_DEBUG, 0, r,
                              "hsync: body done (%s): %" APR_UINT64_T_FMT " bytes in, %"
                              APR_UINT64_T_FMT " bytes out", *hsync_coding(ctx->resp) ? hsync_coding(ctx->resp)
                              : "identity", (apr_uint64_t)in, (apr_uint64_t)out);
            }
            ctx->done = 1;
            hsync_ctx_cleanup(ctx);
            APR_BUCKET_REMOVE(e);
            APR_BRIGADE_INSERT_TAIL(ctx->bb, e);
            apr_brigade_cleanup(bb);
            rv = ap_pass_brigade(f->next, ctx->bb);
            apr_brigade_cleanup(ctx->bb);
            return rv;
        }

        if (APR_BUCKET_IS_FLUSH(e)) {
            if (hsync_feed(f, ctx, NULL, 0, HSYNC_FLUSH) != APR_SUCCESS) {
                return hsync_abort(f, ctx);
            }
            APR_BUCKET_REMOVE(e);
            APR_BRIGADE_INSERT_TAIL(ctx->bb, e);
            rv = ap_pass_brigade(f->next, ctx->bb);
            apr_brigade_cleanup(ctx->bb);
            if (rv != APR_SUCCESS) return rv;
            continue;
        }

        if (APR_BUCKET_IS_METADATA(e)) {
            /* error buckets and the like travel on, in order */
            APR_BUCKET_REMOVE(e);
            APR_BRIGADE_INSERT_TAIL(ctx->bb, e);
            continue;
        }

        {
            const char *data;
            apr_size_t len;
            rv = apr_bucket_read(e, &data, &len, APR_BLOCK_READ);
            if (rv != APR_SUCCESS) {
                ap_log_rerror(APLOG_MARK, APLOG_ERR, rv, r, "hsync: failed reading the body");
                return rv;
            }
            if (len > 0 && hsync_feed(f, ctx, data, len, 0) != APR_SUCCESS) {
                return hsync_abort(f, ctx);
            }
            apr_bucket_delete(e);
        }

        /* Send what is ready; the core holds at most its window. */
        if (!APR_BRIGADE_EMPTY(ctx->bb) && !ctx->hold_tail) {
            rv = ap_pass_brigade(f->next, ctx->bb);
            apr_brigade_cleanup(ctx->bb);
            if (rv != APR_SUCCESS) return rv;
        }
        /* A body sent as it is with its length (only copied into the
         * version store): all but the last bucket, which goes with the
         * next output, a FLUSH, or the EOS. The copy is committed at the
         * EOS (HSYNC_LAST): so the client cannot have the whole body
         * before the version is stored, and a browser that loads the page
         * again at once (on another connection, maybe in another child)
         * finds it. Without this, a response of known length was complete
         * on the client's side while mod_proxy had not yet sent the EOS.
         * (A body without a length ends with the last chunk, after the
         * EOS: nothing to hold.) */
        else if (!APR_BRIGADE_EMPTY(ctx->bb)) {
            apr_bucket *tail = APR_BRIGADE_LAST(ctx->bb);
            APR_BUCKET_REMOVE(tail);
            rv = APR_SUCCESS;
            if (!APR_BRIGADE_EMPTY(ctx->bb)) {
                rv = ap_pass_brigade(f->next, ctx->bb);
                apr_brigade_cleanup(ctx->bb);
            }
            APR_BRIGADE_INSERT_TAIL(ctx->bb, tail);
            if (rv != APR_SUCCESS) return rv;
        }
    }

    return APR_SUCCESS;
}

/* ------------------------------------------------------------------ feeds */

/* Feeds, step 1, on the first call (docs/protocol.md section 8): a feed
 * response the core wants whole (hsync_feed_check) is held: nothing goes
 * downstream, the headers included, until its EOS. */
static int hsync_feed_start(ap_filter_t *f)
{
    request_rec *r = f->r;
    hsync_config cfg;
    hsync_exchange x;
    char msg[HSYNC_MSG_CAP];
    hsync_ctx *ctx;
    int rc;

    if (r->main || served_by_hsync(r)) return HSYNC_DECLINED;
    effective_config(ap_get_module_config(r->per_dir_config, &hsync_module),
                     ap_get_module_config(r->server->module_config, &hsync_module), &cfg);
    if (!cfg.feed && !cfg.feed_implicit) return HSYNC_DECLINED;
    build_exchange(r, &x);
    msg[0] = '\0';
    rc = hsync_feed_check(&cfg, &x, msg, sizeof(msg));
    if (rc != HSYNC_OK) {
        if (rc < 0) {
            ap_log_rerror(APLOG_MARK, APLOG_ERR, 0, r, "hsync feed: %s", hsync_strerror(rc));
        }
        else {
            ap_log_rerror(APLOG_MARK, APLOG_DEBUG, 0, r, "hsync feed: not held: %s", msg);
        }
        return rc;
    }
    ctx = apr_pcalloc(r->pool, sizeof(*ctx));
    ctx->feed_hold = 1;
    ctx->feed_bb = apr_brigade_create(r->pool, f->c->bucket_alloc);
    f->ctx = ctx;
    ap_log_rerror(APLOG_MARK, APLOG_DEBUG, 0, r, "hsync feed: held");
    return HSYNC_OK;
}

/* The held response goes on as it came (through the hsync decision, as any
 * response's): the bytes held so far, then `bb`. */
static apr_status_t hsync_feed_give_up(ap_filter_t *f, hsync_ctx *ctx, apr_bucket_brigade *bb)
{
    ctx->feed_hold = 0;
    APR_BRIGADE_PREPEND(bb, ctx->feed_bb);
    f->ctx = NULL;
    return hsync_body(f, bb);
}

/* The whole body is held: the core's status, edits and body go out. A
 * whole 200 (not truncated) or a 304 then goes through the hsync decision
 * as any response does (a 304 gets the fields a coded 200 would have had);
 * a 226 or a truncated 200 does not. */
static apr_status_t hsync_feed_send(ap_filter_t *f, hsync_ctx *ctx)
{
    request_rec *r = f->r;
    hsync_config cfg;
    hsync_exchange x;
    hsync_response *resp = NULL;
    char msg[HSYNC_MSG_CAP];
    char *data = NULL;
    apr_size_t len = 0;
    const uint8_t *body = NULL;
    size_t body_len;
    apr_bucket_brigade *out;
    unsigned status;
    int rc, whole;
    const char *coding;
    apr_status_t rv;

    rv = apr_brigade_pflatten(ctx->feed_bb, &data, &len, r->pool);
    if (rv != APR_SUCCESS) {
        ap_log_rerror(APLOG_MARK, APLOG_ERR, rv, r, "hsync feed: failed reading the body");
        return rv;
    }
    effective_config(ap_get_module_config(r->per_dir_config, &hsync_module),
                     ap_get_module_config(r->server->module_config, &hsync_module), &cfg);
    build_exchange(r, &x);
    msg[0] = '\0';
    rc = hsync_feed_process(&cfg, &x, (const uint8_t *)data, len, &resp, msg, sizeof(msg));
    out = apr_brigade_create(r->pool, f->c->bucket_alloc);
    if (!resp) {
        /* a bug on one side of the ABI: send the response as it is */
        ap_log_rerror(APLOG_MARK, APLOG_ERR, 0, r, "hsync feed: %s", hsync_strerror(rc));
        APR_BRIGADE_INSERT_TAIL(out, apr_bucket_eos_create(f->c->bucket_alloc));
        return hsync_feed_give_up(f, ctx, out);
    }
    apr_brigade_cleanup(ctx->feed_bb);
    ctx->feed_hold = 0;

    status = hsync_response_status(resp);
    coding = hsync_coding(resp);
    whole = coding[0] == '\0' && (status == HTTP_OK || status == HTTP_NOT_MODIFIED);
    apply_edits(r, resp);
    ap_log_rerror(APLOG_MARK, APLOG_DEBUG, 0, r, "hsync feed: %u, %u edits, coding \"%s\": %s", status,
                  (unsigned)hsync_response_edits(resp, &(const hsync_edit *){ NULL }), coding, msg);
    if (coding[0]) {
        apr_table_setn(r->notes, hsync_note_coding, apr_pstrdup(r->pool, coding));
    }
    r->status = (int)status;
    /* a proxied "200 OK" would otherwise be the status line */
    r->status_line = status == 226 ? "226 IM Used" : NULL;
    body_len = hsync_response_body(resp, &body);
    if (status == HTTP_NOT_MODIFIED) {
        apr_table_unset(r->headers_out, "Content-Length");
        r->clength = 0;
    }
    else {
        if (body_len > 0) {
            /* copied into the pool: the handle is freed below */
            char *copy = apr_pmemdup(r->pool, body, body_len);
            APR_BRIGADE_INSERT_TAIL(out, apr_bucket_pool_create(copy, body_len, r->pool, f->c->bucket_alloc));
        }
        ap_set_content_length(r, (apr_off_t)body_len);
    }
    hsync_response_free(resp);
    APR_BRIGADE_INSERT_TAIL(out, apr_bucket_eos_create(f->c->bucket_alloc));

    if (whole) {
        f->ctx = NULL;
        return hsync_body(f, out);
    }
    ap_remove_output_filter(f);
    return ap_pass_brigade(f->next, out);
}

/* Feeds, step 2: the body is set aside (at most HSYNC_FEED_MAX_BYTES: past
 * it, or on an error bucket, it goes on as it came) until its EOS. */
static apr_status_t hsync_feed_body(ap_filter_t *f, hsync_ctx *ctx, apr_bucket_brigade *bb)
{
    apr_bucket *e;
    apr_status_t rv;

    if (f->r->status != HTTP_OK) {
        /* An error response coming through in place of the one held:
         * the held bytes are dropped. (A handler that fails midway does
         * not come here: ap_die sends its page through the protocol
         * filters only, and what this filter held is never sent.) */
        ap_log_rerror(APLOG_MARK, APLOG_DEBUG, 0, f->r, "hsync feed: status %d while held, the held body dropped",
                      f->r->status);
        apr_brigade_cleanup(ctx->feed_bb);
        ctx->feed_hold = 0;
        f->ctx = NULL;
        return hsync_body(f, bb);
    }
    for (e = APR_BRIGADE_FIRST(bb); e != APR_BRIGADE_SENTINEL(bb); e = APR_BUCKET_NEXT(e)) {
        if (APR_BUCKET_IS_EOS(e)) {
            apr_bucket_brigade *rest = apr_brigade_split_ex(bb, e, NULL);
            rv = ap_save_brigade(f, &ctx->feed_bb, &bb, f->r->pool);
            apr_brigade_cleanup(rest);   /* the EOS and anything after it */
            if (rv != APR_SUCCESS) return rv;
            return hsync_feed_send(f, ctx);
        }
        if (AP_BUCKET_IS_ERROR(e)) {
            ap_log_rerror(APLOG_MARK, APLOG_DEBUG, 0, f->r, "hsync feed: an error in the body, sent as is");
            return hsync_feed_give_up(f, ctx, bb);
        }
        if (APR_BUCKET_IS_METADATA(e)) continue;
        if (e->length == (apr_size_t)-1) {
            /* a pipe or socket: read into memory (the rest follows as the next bucket) */
            const char *d;
            apr_size_t l;
            rv = apr_bucket_read(e, &d, &l, APR_BLOCK_READ);
            if (rv != APR_SUCCESS) {
                ap_log_rerror(APLOG_MARK, APLOG_ERR, rv, f->r, "hsync feed: failed reading the body");
                return rv;
            }
        }
        if (e->length > HSYNC_FEED_MAX_BYTES - ctx->feed_len) {
            ap_log_rerror(APLOG_MARK, APLOG_DEBUG, 0, f->r, "hsync feed: longer than the bound, sent as is");
            return hsync_feed_give_up(f, ctx, bb);
        }
        ctx->feed_len += e->length;
    }
    return ap_save_brigade(f, &ctx->feed_bb, &bb, f->r->pool);
}

static apr_status_t hsync_out_filter(ap_filter_t *f, apr_bucket_brigade *bb)
{
    hsync_ctx *ctx = f->ctx;

    if (APR_BRIGADE_EMPTY(bb)) {
        return APR_SUCCESS;
    }
    if (!ctx && hsync_feed_start(f) == HSYNC_OK) {
        ctx = f->ctx;
    }
    if (ctx && ctx->feed_hold) {
        return hsync_feed_body(f, ctx, bb);
    }
    return hsync_body(f, bb);
}

/* ------------------------------------------------------ dictionary URLs */

static apr_status_t hsync_served_cleanup(void *data)
{
    hsync_response_free(data);
    return APR_SUCCESS;
}

/* The module's own URLs, /.well-known/hsync/dictionary/<sha-256 hex>: the
 * core recognizes them (hsync_serve) and makes the whole response from the
 * version store; the shim only sends it.
 *
 * Why a handler hook, run first (APR_HOOK_REALLY_FIRST), and not
 * quick_handler or translate_name: HsyncDictionary must be On *for that
 * URL*, and the per-directory configuration is complete only once the
 * location, directory and file walks are done, after translate_name (a
 * quick_handler sees the server's defaults only; translate_name sees
 * <Location> but no <Directory>). A handler also honours the URL's access
 * control (Require), as a dictionary must be no easier to read than the
 * page it came from. Run first, it answers whatever would otherwise handle
 * the URL: the default handler of a static directory (where the file does
 * not exist), mod_proxy's handler (ProxyPass sets r->handler to
 * proxy-server in translate_name, but every handler hook is offered the
 * request in turn, ours before it), a FastCGI or any other SetHandler. */
static int hsync_dictionary_handler(request_rec *r)
{
    hsync_config cfg;
    hsync_exchange x;
    hsync_response *resp = NULL;
    const uint8_t *body = NULL;
    size_t len;
    apr_bucket_brigade *bb;
    int rc;

    /* Sub-requests are parts of a page, never a browser's fetch of a dictionary. */
    if (r->main) return DECLINED;
    effective_config(ap_get_module_config(r->per_dir_config, &hsync_module),
                     ap_get_module_config(r->server->module_config, &hsync_module), &cfg);
    if (!cfg.dictionary) return DECLINED;

    memset(&x, 0, sizeof(x));
    x.method = r->method;
    x.method_len = strlen(r->method);
    x.uri = request_target(r);
    x.uri_len = strlen(x.uri);
    x.content_length = -1;
    rc = hsync_serve(&cfg, &x, &resp);
    if (rc != HSYNC_OK) {
        hsync_response_free(resp);
        return DECLINED;   /* not one of ours: the URL's own handler */
    }
    /* The body lives in the handle: freed with the request, after the
     * response has gone (buckets before the request's EOR are written
     * before its pool is destroyed). */
    apr_pool_cleanup_register(r->pool, resp, hsync_served_cleanup, apr_pool_cleanup_null);
    ap_set_module_config(r->request_config, &hsync_module, resp);

    r->status = (int)hsync_response_status(resp);
    apply_edits(r, resp);   /* the response's fields, all SET */
    len = hsync_response_body(resp, &body);
    ap_log_rerror(APLOG_MARK, APLOG_DEBUG, 0, r, "hsync: dictionary %s: status %d, %lu bytes",
                  x.uri, r->status, (unsigned long)len);

    bb = apr_brigade_create(r->pool, r->connection->bucket_alloc);
    if (len > 0 && !r->header_only) {
        /* Transient: a filter that keeps the bytes past its call copies them. */
        APR_BRIGADE_INSERT_TAIL(bb, apr_bucket_transient_create((const char *)body, len,
                                                                r->connection->bucket_alloc));
    }
    APR_BRIGADE_INSERT_TAIL(bb, apr_bucket_eos_create(r->connection->bucket_alloc));
    return ap_pass_brigade_fchk(r, bb, "hsync: sending a dictionary");
}

/* ------------------------------------------------------- 304 and mod_filter */

/* Shared by the two filters around one BYTYPE:HSYNC. */
typedef struct {
    int set;   /* we set filter-errordocs for this 304 */
} nm_ctx;

static apr_status_t nm_open_filter(ap_filter_t *f, apr_bucket_brigade *bb)
{
    nm_ctx *ctx = f->ctx;
    request_rec *r = f->r;
    if (r->status == HTTP_NOT_MODIFIED && !apr_table_get(r->subprocess_env, errordocs_env)) {
        apr_table_setn(r->subprocess_env, errordocs_env, "1");
        ctx->set = 1;
    }
    ap_remove_output_filter(f);
    return ap_pass_brigade(f->next, bb);
}

static apr_status_t nm_close_filter(ap_filter_t *f, apr_bucket_brigade *bb)
{
    nm_ctx *ctx = f->ctx;
    if (ctx->set) {
        apr_table_unset(f->r->subprocess_env, errordocs_env);
        ctx->set = 0;
    }
    ap_remove_output_filter(f);
    return ap_pass_brigade(f->next, bb);
}

static void unlink_filter(request_rec *r, ap_filter_t *f)
{
    ap_filter_t **pp;
    for (pp = &r->output_filters; *pp; pp = &(*pp)->next) {
        if (*pp == f) {
            *pp = f->next;
            return;
        }
    }
}

/* After mod_filter's insert_filter: mod_filter runs BYTYPE:HSYNC only on
 * status 200, so a 304 would never reach the core. Bracket it with a
 * filter that sets filter-errordocs on a 304 and one that takes it away
 * again, so that mod_filter matches HSYNC's types on the 304 as it would
 * on the 200, and no other filter sees the variable. */
static void hsync_insert_filter(request_rec *r)
{
    ap_filter_t **pp, *h, *open, *close;
    nm_ctx *ctx;

    /* Sub-requests too: mod_dir's fast redirect makes a sub-request's
     * filters the main request's. */
    for (pp = &r->output_filters; *pp; pp = &(*pp)->next) {
        if ((*pp)->r == r && !strcasecmp((*pp)->frec->name, hsync_bytype_name)) break;
    }
    if (!*pp) return;
    h = *pp;
    ctx = apr_pcalloc(r->pool, sizeof(*ctx));
    open = ap_add_output_filter_handle(nm_open_rec, ctx, r, r->connection);
    close = ap_add_output_filter_handle(nm_close_rec, ctx, r, r->connection);
    if (!open || !close) return;
    unlink_filter(r, open);
    unlink_filter(r, close);
    for (pp = &r->output_filters; *pp != h; pp = &(*pp)->next) {
    }
    open->next = h;
    *pp = open;
    close->next = h->next;
    h->next = close;
}

/* At a child's exit, what the core kept between requests (its pools and
 * caches, each bounded): for whoever reads a debug log to size a server. */
static apr_status_t hsync_child_exit(void *data)
{
    server_rec *s = data;
    ap_log_error(APLOG_MARK, APLOG_DEBUG, 0, s,
                 "hsync: child exiting, the core kept %" APR_UINT64_T_FMT " bytes in its pools and caches",
                 (apr_uint64_t)hsync_cached_bytes());
    return APR_SUCCESS;
}

static void hsync_child_init(apr_pool_t *p, server_rec *s)
{
    apr_pool_cleanup_register(p, s, hsync_child_exit, apr_pool_cleanup_null);
}

static void register_hooks(apr_pool_t *p)
{
    static const char *const after_filter[] = { "mod_filter.c", NULL };
    (void)p;
    ap_register_output_filter(hsync_filter_name, hsync_out_filter, NULL,
                              AP_FTYPE_CONTENT_SET - 1);
    nm_open_rec = ap_register_output_filter("HSYNC_304_OPEN", nm_open_filter, NULL, AP_FTYPE_RESOURCE);
    nm_close_rec = ap_register_output_filter("HSYNC_304_CLOSE", nm_close_filter, NULL, AP_FTYPE_RESOURCE);
    ap_hook_insert_filter(hsync_insert_filter, after_filter, NULL, APR_HOOK_LAST);
    ap_hook_check_config(hsync_check_config, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_post_config(hsync_post_config, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_child_init(hsync_child_init, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_handler(hsync_dictionary_handler, NULL, NULL, APR_HOOK_REALLY_FIRST);
}

module AP_MODULE_DECLARE_DATA hsync_module = {
    STANDARD20_MODULE_STUFF,
    create_hsync_config,          /* dir config */
    merge_hsync_config,           /* merge dir config */
    create_hsync_server_config,   /* server config */
    merge_hsync_server_config,    /* merge server config */
    hsync_cmds,
    register_hooks,
    AP_MODULE_FLAG_NONE
};
