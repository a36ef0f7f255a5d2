/*
 * mod_hsync.c — Apache httpd 2.4 output filter "HSYNC": sends a response as
 * an hsync delta against the client's cached copy (Content-Encoding: hsync).
 *
 * A thin shim over the hsync core (core/include/hsync.h). Every decision —
 * does the request ask for hsync, does the response qualify, which Vary and
 * ETag to send — is made by the core, exactly as for the nginx module; this
 * file only moves headers and buckets between httpd and the core.
 *
 *   LoadModule hsync_module modules/mod_hsync.so
 *   AddOutputFilterByType HSYNC text/html      (or SetOutputFilter HSYNC)
 *   HsyncMinLength 256
 *   HsyncMaxSignature 4608
 *   HsyncCompressionLevel 0                    (0 = the core's default)
 *   LogFormat "... %{hsync_ratio}n" ...
 *
 * Ordering with mod_deflate: the filter is registered one step before
 * AP_FTYPE_CONTENT_SET (where DEFLATE and BROTLI_COMPRESS sit), so it always
 * runs first whatever the order of the configuration lines. When it engages,
 * the response carries Content-Encoding: hsync and mod_deflate steps aside;
 * when it declines, mod_deflate compresses as usual.
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

#include <errno.h>
#include <limits.h>

#include "hsync.h"

APLOG_USE_MODULE(hsync);

static const char hsync_filter_name[] = "HSYNC";
static const char hsync_note_ratio[] = "hsync_ratio";

#define HSYNC_MSG_CAP 256
#define UNSET_U64 ((apr_uint64_t)-1)
#define UNSET_INT INT_MIN

/* ------------------------------------------------------------------ config */

typedef struct {
    apr_uint64_t min_length;     /* UNSET_U64 = inherit */
    apr_uint64_t max_signature;  /* UNSET_U64 = inherit */
    int level;                   /* UNSET_INT = inherit */
} hsync_dir_conf;

static void *create_hsync_config(apr_pool_t *p, char *dummy)
{
    hsync_dir_conf *c = apr_pcalloc(p, sizeof(*c));
    (void)dummy;
    c->min_length = UNSET_U64;
    c->max_signature = UNSET_U64;
    c->level = UNSET_INT;
    return c;
}

static void *merge_hsync_config(apr_pool_t *p, void *basev, void *addv)
{
    hsync_dir_conf *base = basev, *add = addv;
    hsync_dir_conf *c = apr_pcalloc(p, sizeof(*c));
    c->min_length = add->min_length != UNSET_U64 ? add->min_length : base->min_length;
    c->max_signature = add->max_signature != UNSET_U64 ? add->max_signature : base->max_signature;
    c->level = add->level != UNSET_INT ? add->level : base->level;
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

/* The per-directory settings fall back on the (merged) server settings,
 * then on the core's defaults. */
static void hsync_effective_config(request_rec *r, hsync_config *out)
{
    hsync_dir_conf *d = ap_get_module_config(r->per_dir_config, &hsync_module);
    hsync_dir_conf *s = ap_get_module_config(r->server->module_config, &hsync_module);

    hsync_config_default(out);
    if (d && d->min_length != UNSET_U64)          out->min_length = d->min_length;
    else if (s && s->min_length != UNSET_U64)     out->min_length = s->min_length;
    if (d && d->max_signature != UNSET_U64)       out->max_signature = d->max_signature;
    else if (s && s->max_signature != UNSET_U64)  out->max_signature = s->max_signature;
    if (d && d->level != UNSET_INT)               out->level = d->level;
    else if (s && s->level != UNSET_INT)          out->level = s->level;
}

static const char *parse_u64(cmd_parms *cmd, const char *arg, apr_uint64_t *out)
{
    char *end;
    apr_int64_t v;

    errno = 0;
    v = apr_strtoi64(arg, &end, 10);
    if (errno || *arg == '\0' || *end != '\0' || v < 0) {
        return apr_psprintf(cmd->pool, "%s must be a non-negative integer, not '%s'",
                            cmd->cmd->name, arg);
    }
    *out = (apr_uint64_t)v;
    return NULL;
}

/* The directives work at server level and in <Directory>/<Location>/.htaccess
 * (FileInfo); server-level values are stored in both configs so that
 * virtual hosts inherit them through the usual merges. */
static hsync_dir_conf *server_conf_for(cmd_parms *cmd)
{
    return cmd->path ? NULL
                     : ap_get_module_config(cmd->server->module_config, &hsync_module);
}

static const char *set_min_length(cmd_parms *cmd, void *dcfg, const char *arg)
{
    hsync_dir_conf *d = dcfg, *s = server_conf_for(cmd);
    apr_uint64_t v;
    const char *err = parse_u64(cmd, arg, &v);
    if (err) return err;
    d->min_length = v;
    if (s) s->min_length = v;
    return NULL;
}

static const char *set_max_signature(cmd_parms *cmd, void *dcfg, const char *arg)
{
    hsync_dir_conf *d = dcfg, *s = server_conf_for(cmd);
    apr_uint64_t v;
    const char *err = parse_u64(cmd, arg, &v);
    if (err) return err;
    if (v == 0) return "HsyncMaxSignature must be positive";
    d->max_signature = v;
    if (s) s->max_signature = v;
    return NULL;
}

static const char *set_level(cmd_parms *cmd, void *dcfg, const char *arg)
{
    hsync_dir_conf *d = dcfg, *s = server_conf_for(cmd);
    apr_uint64_t v;
    const char *err = parse_u64(cmd, arg, &v);
    if (err) return err;
    if (v > 22) return "HsyncCompressionLevel must be between 0 (default) and 22";
    d->level = (int)v;
    if (s) s->level = (int)v;
    return NULL;
}

static const command_rec hsync_cmds[] = {
    AP_INIT_TAKE1("HsyncMinLength", set_min_length, NULL, RSRC_CONF | ACCESS_CONF | OR_FILEINFO,
                  "Responses with a known length below this many bytes are sent as they are (default 256)"),
    AP_INIT_TAKE1("HsyncMaxSignature", set_max_signature, NULL, RSRC_CONF | ACCESS_CONF | OR_FILEINFO,
                  "Largest decoded Hsync-Signature accepted, in bytes (default 4608)"),
    AP_INIT_TAKE1("HsyncCompressionLevel", set_level, NULL, RSRC_CONF | ACCESS_CONF | OR_FILEINFO,
                  "zstd level for literal bytes, 1-22; 0 = the core's default"),
    { NULL }
};

/* ------------------------------------------------------------------ filter */

typedef struct {
    hsync_encoder *enc;
    apr_bucket_brigade *bb;   /* output on its way to the next filter */
    int done;
} hsync_ctx;

static apr_status_t hsync_ctx_cleanup(void *data)
{
    hsync_ctx *ctx = data;
    if (ctx->enc) {
        hsync_encoder_free(ctx->enc);
        ctx->enc = NULL;
    }
    return APR_SUCCESS;
}

/* A header from headers_out and err_headers_out, joined with ", " as they
 * would be on the wire. */
static const char *out_header(request_rec *r, const char *name)
{
    const char *a = apr_table_get(r->headers_out, name);
    const char *b = apr_table_get(r->err_headers_out, name);
    if (a && b) return apr_pstrcat(r->pool, a, ", ", b, NULL);
    return a ? a : b;
}

static apr_status_t pass_through(ap_filter_t *f, apr_bucket_brigade *bb)
{
    ap_remove_output_filter(f);
    return ap_pass_brigade(f->next, bb);
}

static void log_invalid(request_rec *r, int rc, const char *msg)
{
    ap_log_rerror(APLOG_MARK, APLOG_INFO, 0, r, "hsync: %s",
                  *msg ? msg : hsync_strerror(rc));
}

/* The one decision, on the first call: the core looks at the request and
 * the response; on HSYNC_OK we set the headers and keep an encoder. */
static int hsync_decide(ap_filter_t *f, hsync_ctx **out)
{
    request_rec *r = f->r;
    hsync_config cfg;
    hsync_encoder *enc = NULL;
    char msg[HSYNC_MSG_CAP];
    const char *ae, *sig, *ce, *cc, *cl, *vary, *etag, *val;
    size_t val_len;
    apr_off_t clen = -1;
    int rc;
    hsync_ctx *ctx;

    /* Sub-requests (includes) are part of their main response. */
    if (r->main) return HSYNC_DECLINED;

    hsync_effective_config(r, &cfg);
    ae = apr_table_get(r->headers_in, "Accept-Encoding");
    sig = apr_table_get(r->headers_in, "Hsync-Signature");
    msg[0] = '\0';
    rc = hsync_request(&cfg, r->method, strlen(r->method),
                       ae, ae ? strlen(ae) : 0,
                       sig, sig ? strlen(sig) : 0,
                       apr_table_get(r->headers_in, "Range") != NULL,
                       &enc, msg, sizeof(msg));
    if (rc != HSYNC_OK) {
        if (rc < 0) log_invalid(r, rc, msg);
        return rc;
    }

    /* Content-Encoding as it will be sent: the tables and r->content_encoding. */
    ce = out_header(r, "Content-Encoding");
    if (r->content_encoding) {
        ce = ce ? apr_pstrcat(r->pool, ce, ", ", r->content_encoding, NULL)
                : r->content_encoding;
    }
    cc = out_header(r, "Cache-Control");
    cl = apr_table_get(r->headers_out, "Content-Length");
    if (cl) {
        char *end;
        if (apr_strtoff(&clen, cl, &end, 10) != APR_SUCCESS || *end != '\0' || clen < 0) {
            clen = -1;
        }
    }
    msg[0] = '\0';
    rc = hsync_response(enc, (unsigned)r->status,
                        ce, ce ? strlen(ce) : 0,
                        cc, cc ? strlen(cc) : 0,
                        (int64_t)clen, msg, sizeof(msg));
    if (rc != HSYNC_OK) {
        hsync_encoder_free(enc);
        if (rc < 0) log_invalid(r, rc, msg);
        return rc;
    }

    ctx = apr_pcalloc(r->pool, sizeof(*ctx));
    ctx->enc = enc;
    ctx->bb = apr_brigade_create(r->pool, f->c->bucket_alloc);
    apr_pool_cleanup_register(r->pool, ctx, hsync_ctx_cleanup, apr_pool_cleanup_null);

    /* Engage: the headers, as hsync.h lists them. */
    r->content_encoding = "hsync";
    apr_table_setn(r->headers_out, "Content-Encoding", "hsync");
    apr_table_unset(r->err_headers_out, "Content-Encoding");
    apr_table_unset(r->headers_out, "Content-Length");
    apr_table_unset(r->err_headers_out, "Content-Length");
    apr_table_unset(r->headers_out, "Accept-Ranges");
    apr_table_unset(r->err_headers_out, "Accept-Ranges");

    vary = out_header(r, "Vary");
    if (hsync_vary(enc, vary, vary ? strlen(vary) : 0, &val, &val_len) == HSYNC_OK) {
        apr_table_unset(r->err_headers_out, "Vary");
        apr_table_set(r->headers_out, "Vary", apr_pstrmemdup(r->pool, val, val_len));
    }
    etag = apr_table_get(r->headers_out, "ETag");
    if (etag && hsync_etag(enc, etag, strlen(etag), &val, &val_len) == HSYNC_OK) {
        apr_table_set(r->headers_out, "ETag", apr_pstrmemdup(r->pool, val, val_len));
    }
    etag = apr_table_get(r->err_headers_out, "ETag");
    if (etag && hsync_etag(enc, etag, strlen(etag), &val, &val_len) == HSYNC_OK) {
        apr_table_set(r->err_headers_out, "ETag", apr_pstrmemdup(r->pool, val, val_len));
    }

    *out = ctx;
    return HSYNC_OK;
}

/* Feeds one piece to the encoder and queues what comes out. */
static apr_status_t hsync_feed(ap_filter_t *f, hsync_ctx *ctx,
                               const char *data, apr_size_t len, unsigned flags)
{
    const uint8_t *out = NULL;
    size_t out_len = 0;
    int rc = hsync_encode(ctx->enc, (const uint8_t *)data, len, flags, &out, &out_len);

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

/* The encoder cannot complete the delta: end the response badly so that the
 * client sees a truncated body (no last chunk, connection closed), never a
 * corrupt but complete one. */
static apr_status_t hsync_abort(ap_filter_t *f, hsync_ctx *ctx)
{
    apr_bucket *b;
    ctx->done = 1;
    hsync_ctx_cleanup(ctx);
    apr_brigade_cleanup(ctx->bb);
    b = ap_bucket_error_create(HTTP_BAD_GATEWAY, NULL, f->r->pool, f->c->bucket_alloc);
    APR_BRIGADE_INSERT_TAIL(ctx->bb, b);
    b = apr_bucket_eos_create(f->c->bucket_alloc);
    APR_BRIGADE_INSERT_TAIL(ctx->bb, b);
    f->c->keepalive = AP_CONN_CLOSE;
    ap_pass_brigade(f->next, ctx->bb);
    apr_brigade_cleanup(ctx->bb);
    return APR_EGENERAL;
}

static apr_status_t hsync_out_filter(ap_filter_t *f, apr_bucket_brigade *bb)
{
    request_rec *r = f->r;
    hsync_ctx *ctx = f->ctx;
    apr_status_t rv;

    if (APR_BRIGADE_EMPTY(bb)) {
        return APR_SUCCESS;
    }

    if (!ctx) {
        if (hsync_decide(f, &ctx) != HSYNC_OK) {
            return pass_through(f, bb);
        }
        f->ctx = ctx;
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
            if (hsync_ratio(ctx->enc, ratio, sizeof(ratio)) > 0) {
                apr_table_setn(r->notes, hsync_note_ratio, apr_pstrdup(r->pool, ratio));
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
        if (!APR_BRIGADE_EMPTY(ctx->bb)) {
            rv = ap_pass_brigade(f->next, ctx->bb);
            apr_brigade_cleanup(ctx->bb);
            if (rv != APR_SUCCESS) return rv;
        }
    }

    return APR_SUCCESS;
}

static void register_hooks(apr_pool_t *p)
{
    (void)p;
    ap_register_output_filter(hsync_filter_name, hsync_out_filter, NULL,
                              AP_FTYPE_CONTENT_SET - 1);
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
