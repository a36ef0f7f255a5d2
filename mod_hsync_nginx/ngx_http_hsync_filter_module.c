
/*
 * ngx_http_hsync_filter_module: sends responses as hsync deltas against
 * the client's cached copy (Accept-Encoding: hsync, Hsync-Signature).
 *
 * A thin shim over the hsync core (core/include/hsync.h): every decision
 * about the request, the response, the signature and the header values is
 * made there, so that nginx and Apache agree. This file only checks its
 * own configuration ("hsync", "hsync_types"), moves headers and buffers.
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <hsync.h>


/* hsync and gzip never both hold data for one request */
#define NGX_HTTP_HSYNC_BUFFERED  NGX_HTTP_GZIP_BUFFERED

#define NGX_HTTP_HSYNC_MSG_LEN   256
#define NGX_HTTP_HSYNC_RATIO_LEN 32


typedef struct {
    ngx_flag_t           enable;

    ngx_hash_t           types;
    ngx_array_t         *types_keys;

    ngx_bufs_t           bufs;

    size_t               min_length;
    size_t               max_signature;
    ngx_int_t            level;

    hsync_config         core;
} ngx_http_hsync_conf_t;


typedef struct {
    hsync_encoder       *encoder;

    ngx_chain_t         *in;
    ngx_chain_t         *free;
    ngx_chain_t         *busy;
    ngx_chain_t         *out;
    ngx_chain_t        **last_out;

    const u_char        *pending;
    size_t               pending_len;

    ngx_uint_t           bufs;

    unsigned             flush:1;
    unsigned             last:1;
    unsigned             done:1;
} ngx_http_hsync_ctx_t;


static ngx_int_t ngx_http_hsync_header(ngx_http_request_t *r,
    ngx_list_t *headers, const char *name, ngx_str_t *value,
    ngx_table_elt_t **first);
static ngx_table_elt_t *ngx_http_hsync_push_header(ngx_http_request_t *r,
    char *key);
static ngx_int_t ngx_http_hsync_engage(ngx_http_request_t *r,
    ngx_http_hsync_ctx_t *ctx);
static ngx_int_t ngx_http_hsync_encode(ngx_http_request_t *r,
    ngx_http_hsync_ctx_t *ctx);
static ngx_int_t ngx_http_hsync_copy(ngx_http_request_t *r,
    ngx_http_hsync_ctx_t *ctx, ngx_http_hsync_conf_t *conf);
static void ngx_http_hsync_cleanup(void *data);

static ngx_int_t ngx_http_hsync_ratio_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);

static ngx_int_t ngx_http_hsync_add_variables(ngx_conf_t *cf);
static ngx_int_t ngx_http_hsync_filter_init(ngx_conf_t *cf);
static void *ngx_http_hsync_create_conf(ngx_conf_t *cf);
static char *ngx_http_hsync_merge_conf(ngx_conf_t *cf, void *parent,
    void *child);


static ngx_conf_num_bounds_t  ngx_http_hsync_comp_level_bounds = {
    ngx_conf_check_num_bounds, 1, 22
};


static ngx_command_t  ngx_http_hsync_filter_commands[] = {

    { ngx_string("hsync"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_HTTP_LIF_CONF
                        |NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_hsync_conf_t, enable),
      NULL },

    { ngx_string("hsync_types"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_1MORE,
      ngx_http_types_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_hsync_conf_t, types_keys),
      &ngx_http_html_default_types[0] },

    { ngx_string("hsync_buffers"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE2,
      ngx_conf_set_bufs_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_hsync_conf_t, bufs),
      NULL },

    { ngx_string("hsync_min_length"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_size_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_hsync_conf_t, min_length),
      NULL },

    { ngx_string("hsync_max_signature"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_size_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_hsync_conf_t, max_signature),
      NULL },

    { ngx_string("hsync_comp_level"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_hsync_conf_t, level),
      &ngx_http_hsync_comp_level_bounds },

      ngx_null_command
};


static ngx_http_module_t  ngx_http_hsync_filter_module_ctx = {
    ngx_http_hsync_add_variables,          /* preconfiguration */
    ngx_http_hsync_filter_init,            /* postconfiguration */

    NULL,                                  /* create main configuration */
    NULL,                                  /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    ngx_http_hsync_create_conf,            /* create location configuration */
    ngx_http_hsync_merge_conf              /* merge location configuration */
};


ngx_module_t  ngx_http_hsync_filter_module = {
    NGX_MODULE_V1,
    &ngx_http_hsync_filter_module_ctx,     /* module context */
    ngx_http_hsync_filter_commands,        /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    NULL,                                  /* init module */
    NULL,                                  /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    NULL,                                  /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


static ngx_str_t  ngx_http_hsync_ratio = ngx_string("hsync_ratio");

static ngx_http_output_header_filter_pt  ngx_http_next_header_filter;
static ngx_http_output_body_filter_pt    ngx_http_next_body_filter;


static ngx_int_t
ngx_http_hsync_header_filter(ngx_http_request_t *r)
{
    int                     rc;
    char                    msg[NGX_HTTP_HSYNC_MSG_LEN];
    ngx_str_t               ae, sig, ce, cc;
    ngx_int_t               has_ae, has_sig, has_ce, has_cc;
    hsync_encoder          *encoder;
    ngx_pool_cleanup_t     *cln;
    ngx_http_hsync_ctx_t   *ctx;
    ngx_http_hsync_conf_t  *conf;

    conf = ngx_http_get_module_loc_conf(r, ngx_http_hsync_filter_module);

    if (!conf->enable
        || r != r->main
        || ngx_http_test_content_type(r, &conf->types) == NULL)
    {
        return ngx_http_next_header_filter(r);
    }

    has_ae = ngx_http_hsync_header(r, &r->headers_in.headers,
                                   "Accept-Encoding", &ae, NULL);
    has_sig = ngx_http_hsync_header(r, &r->headers_in.headers,
                                    "Hsync-Signature", &sig, NULL);

    if (has_ae == NGX_ERROR || has_sig == NGX_ERROR) {
        return NGX_ERROR;
    }

    encoder = NULL;

    rc = hsync_request(&conf->core,
                       (const char *) r->method_name.data,
                       r->method_name.len,
                       has_ae == NGX_OK ? (const char *) ae.data : NULL,
                       ae.len,
                       has_sig == NGX_OK ? (const char *) sig.data : NULL,
                       sig.len,
                       r->headers_in.range != NULL,
                       &encoder, msg, sizeof(msg));

    if (rc != HSYNC_OK) {
        if (rc < 0) {
            ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                          "hsync: %s", msg);
        }

        return ngx_http_next_header_filter(r);
    }

    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == NULL) {
        hsync_encoder_free(encoder);
        return NGX_ERROR;
    }

    ctx = ngx_pcalloc(r->pool, sizeof(ngx_http_hsync_ctx_t));
    if (ctx == NULL) {
        hsync_encoder_free(encoder);
        return NGX_ERROR;
    }

    ctx->encoder = encoder;
    ctx->last_out = &ctx->out;

    cln->handler = ngx_http_hsync_cleanup;
    cln->data = ctx;

    has_ce = ngx_http_hsync_header(r, &r->headers_out.headers,
                                   "Content-Encoding", &ce, NULL);
    has_cc = ngx_http_hsync_header(r, &r->headers_out.headers,
                                   "Cache-Control", &cc, NULL);

    if (has_ce == NGX_ERROR || has_cc == NGX_ERROR) {
        return NGX_ERROR;
    }

    rc = hsync_response(encoder, r->headers_out.status,
                        has_ce == NGX_OK ? (const char *) ce.data : NULL,
                        ce.len,
                        has_cc == NGX_OK ? (const char *) cc.data : NULL,
                        cc.len,
                        r->headers_out.content_length_n,
                        msg, sizeof(msg));

    if (rc != HSYNC_OK) {
        if (rc < 0) {
            ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                          "hsync: %s", msg);
        }

        hsync_encoder_free(encoder);
        ctx->encoder = NULL;

        return ngx_http_next_header_filter(r);
    }

    if (ngx_http_hsync_engage(r, ctx) != NGX_OK) {
        return NGX_ERROR;
    }

    ngx_http_set_ctx(r, ctx, ngx_http_hsync_filter_module);

    r->main_filter_need_in_memory = 1;

    ngx_http_clear_content_length(r);
    ngx_http_clear_accept_ranges(r);

    return ngx_http_next_header_filter(r);
}


/* A new response header named key (a literal); its value is the caller's. */

static ngx_table_elt_t *
ngx_http_hsync_push_header(ngx_http_request_t *r, char *key)
{
    ngx_table_elt_t  *h;

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NULL;
    }

    h->hash = 1;
#if (nginx_version >= 1023000)
    h->next = NULL;
#endif
    h->key.len = ngx_strlen(key);
    h->key.data = (u_char *) key;

    return h;
}


static ngx_int_t
ngx_http_hsync_engage(ngx_http_request_t *r, ngx_http_hsync_ctx_t *ctx)
{
    size_t            len;
    ngx_str_t         vary;
    ngx_int_t         rc;
    const char       *p;
    ngx_table_elt_t  *h;

    h = ngx_http_hsync_push_header(r, "Content-Encoding");
    if (h == NULL) {
        return NGX_ERROR;
    }

    ngx_str_set(&h->value, "hsync");
    r->headers_out.content_encoding = h;

    /* one Vary header with the merged names; the others are dropped */

    rc = ngx_http_hsync_header(r, &r->headers_out.headers, "Vary", &vary, &h);
    if (rc == NGX_ERROR) {
        return NGX_ERROR;
    }

    if (hsync_vary(ctx->encoder, rc == NGX_OK ? (const char *) vary.data : NULL,
                   vary.len, &p, &len)
        != HSYNC_OK)
    {
        return NGX_ERROR;
    }

    if (h == NULL) {
        h = ngx_http_hsync_push_header(r, "Vary");
        if (h == NULL) {
            return NGX_ERROR;
        }
    }

    h->value.data = ngx_pnalloc(r->pool, len);
    if (h->value.data == NULL) {
        return NGX_ERROR;
    }

    h->value.len = ngx_cpymem(h->value.data, p, len) - h->value.data;

    /* ETag */

    h = r->headers_out.etag;

    if (h == NULL) {
        return NGX_OK;
    }

    if (hsync_etag(ctx->encoder, (const char *) h->value.data, h->value.len,
                   &p, &len)
        != HSYNC_OK)
    {
        return NGX_OK;
    }

    h->value.data = ngx_pnalloc(r->pool, len);
    if (h->value.data == NULL) {
        return NGX_ERROR;
    }

    h->value.len = ngx_cpymem(h->value.data, p, len) - h->value.data;

    return NGX_OK;
}


/*
 * All values of the header "name" in "headers", joined with ", ".
 * With "first", the first such header is returned there and the others
 * are removed (so that the caller can replace the joined value).
 */

static ngx_int_t
ngx_http_hsync_header(ngx_http_request_t *r, ngx_list_t *headers,
    const char *name, ngx_str_t *value, ngx_table_elt_t **first)
{
    size_t            len, n;
    u_char           *p;
    ngx_uint_t        i, count;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h, *found;

    len = ngx_strlen(name);
    n = 0;
    count = 0;
    found = NULL;

    ngx_str_null(value);

    for (part = &headers->part; part; part = part->next) {
        h = part->elts;

        for (i = 0; i < part->nelts; i++) {
            if (h[i].hash == 0
                || h[i].key.len != len
                || ngx_strncasecmp(h[i].key.data, (u_char *) name, len) != 0)
            {
                continue;
            }

            if (found == NULL) {
                found = &h[i];
            }

            n += h[i].value.len + (count++ ? 2 : 0);
        }
    }

    if (first) {
        *first = found;
    }

    if (found == NULL) {
        return NGX_DECLINED;
    }

    if (count == 1) {
        *value = found->value;
        return NGX_OK;
    }

    value->data = ngx_pnalloc(r->pool, n);
    if (value->data == NULL) {
        return NGX_ERROR;
    }

    p = value->data;

    for (part = &headers->part; part; part = part->next) {
        h = part->elts;

        for (i = 0; i < part->nelts; i++) {
            if (h[i].hash == 0
                || h[i].key.len != len
                || ngx_strncasecmp(h[i].key.data, (u_char *) name, len) != 0)
            {
                continue;
            }

            if (p != value->data) {
                *p++ = ','; *p++ = ' ';
            }

            p = ngx_cpymem(p, h[i].value.data, h[i].value.len);

            if (first && &h[i] != found) {
                h[i].hash = 0;
            }
        }
    }

    value->len = p - value->data;

    return NGX_OK;
}


static ngx_int_t
ngx_http_hsync_body_filter(ngx_http_request_t *r, ngx_chain_t *in)
{
    ngx_int_t               rc;
    ngx_http_hsync_ctx_t   *ctx;
    ngx_http_hsync_conf_t  *conf;

    ctx = ngx_http_get_module_ctx(r, ngx_http_hsync_filter_module);

    if (ctx == NULL || ctx->done || r->header_only) {
        return ngx_http_next_body_filter(r, in);
    }

    conf = ngx_http_get_module_loc_conf(r, ngx_http_hsync_filter_module);

    if (in) {
        if (ngx_chain_add_copy(r->pool, &ctx->in, in) != NGX_OK) {
            goto failed;
        }

        r->connection->buffered |= NGX_HTTP_HSYNC_BUFFERED;
    }

    for ( ;; ) {

        /* encode input into our buffers while there are buffers */

        for ( ;; ) {

            rc = ngx_http_hsync_copy(r, ctx, conf);

            if (rc == NGX_ERROR) {
                goto failed;
            }

            if (rc == NGX_AGAIN || ctx->last || ctx->in == NULL) {
                break;
            }

            if (ngx_http_hsync_encode(r, ctx) != NGX_OK) {
                goto failed;
            }
        }

        if (ctx->out == NULL) {
            return ctx->busy ? NGX_AGAIN : NGX_OK;
        }

        if (ctx->last && ctx->pending_len == 0) {
            ctx->done = 1;
        }

        rc = ngx_http_next_body_filter(r, ctx->out);

        if (rc == NGX_ERROR) {
            goto failed;
        }

        ngx_chain_update_chains(r->pool, &ctx->free, &ctx->busy, &ctx->out,
                                (ngx_buf_tag_t) &ngx_http_hsync_filter_module);
        ctx->last_out = &ctx->out;

        if (ctx->in == NULL && ctx->pending_len == 0) {
            r->connection->buffered &= ~NGX_HTTP_HSYNC_BUFFERED;
        }

        if (ctx->done) {
            return rc;
        }
    }

failed:

    ctx->done = 1;
    r->connection->buffered &= ~NGX_HTTP_HSYNC_BUFFERED;

    return NGX_ERROR;
}


/* Feeds the first input buffer to the encoder; its output becomes pending. */

static ngx_int_t
ngx_http_hsync_encode(ngx_http_request_t *r, ngx_http_hsync_ctx_t *ctx)
{
    int           rc;
    size_t        len;
    unsigned      flags;
    ngx_buf_t    *b;
    ngx_chain_t  *cl;

    cl = ctx->in;
    b = cl->buf;

    len = 0;

    if (ngx_buf_in_memory(b)) {
        len = b->last - b->pos;

    } else if (ngx_buf_size(b)) {
        ngx_log_error(NGX_LOG_ALERT, r->connection->log, 0,
                      "hsync: buffer not in memory");
        return NGX_ERROR;
    }

    flags = 0;

    if (b->flush) {
        flags |= HSYNC_FLUSH;
    }

    if (r == r->main ? b->last_buf : b->last_in_chain) {
        flags |= HSYNC_LAST;
    }

    if (len == 0 && flags == 0) {
        ctx->in = cl->next;
        ngx_free_chain(r->pool, cl);
        return NGX_OK;
    }

    rc = hsync_encode(ctx->encoder, b->pos, len, flags,
                      &ctx->pending, &ctx->pending_len);

    if (rc != HSYNC_OK) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "hsync: encoding failed: %s", hsync_strerror(rc));
        return NGX_ERROR;
    }

    b->pos = b->last;

    if (b->in_file) {
        b->file_pos = b->file_last;
    }

    ctx->flush = (flags & HSYNC_FLUSH) ? 1 : 0;
    ctx->last = (flags & HSYNC_LAST) ? 1 : 0;

    ctx->in = cl->next;
    ngx_free_chain(r->pool, cl);

    return NGX_OK;
}


/*
 * Copies pending encoder output into our buffers and appends them to
 * ctx->out; NGX_AGAIN when all buffers are busy downstream.
 */

static ngx_int_t
ngx_http_hsync_copy(ngx_http_request_t *r, ngx_http_hsync_ctx_t *ctx,
    ngx_http_hsync_conf_t *conf)
{
    size_t        n;
    ngx_buf_t    *b;
    ngx_chain_t  *cl;

    b = NULL;

    while (ctx->pending_len) {

        if (ctx->free == NULL && ctx->bufs >= (ngx_uint_t) conf->bufs.num) {
            return NGX_AGAIN;
        }

        cl = ngx_chain_get_free_buf(r->pool, &ctx->free);
        if (cl == NULL) {
            return NGX_ERROR;
        }

        b = cl->buf;

        if (b->start == NULL) {
            b->start = ngx_palloc(r->pool, conf->bufs.size);
            if (b->start == NULL) {
                return NGX_ERROR;
            }

            b->end = b->start + conf->bufs.size;
            b->temporary = 1;
            b->tag = (ngx_buf_tag_t) &ngx_http_hsync_filter_module;

            ctx->bufs++;
        }

        b->pos = b->start;
        b->flush = 0;
        b->last_buf = 0;
        b->last_in_chain = 0;

        n = ngx_min(ctx->pending_len, (size_t) (b->end - b->start));

        b->last = ngx_cpymem(b->start, ctx->pending, n);

        ctx->pending += n;
        ctx->pending_len -= n;

        *ctx->last_out = cl;
        ctx->last_out = &cl->next;
    }

    if (!ctx->flush && !ctx->last) {
        return NGX_OK;
    }

    /* mark the end of this piece of output, in an empty buffer if need be */

    if (b == NULL) {
        b = ngx_calloc_buf(r->pool);
        if (b == NULL) {
            return NGX_ERROR;
        }

        cl = ngx_alloc_chain_link(r->pool);
        if (cl == NULL) {
            return NGX_ERROR;
        }

        cl->buf = b;
        cl->next = NULL;

        *ctx->last_out = cl;
        ctx->last_out = &cl->next;
    }

    if (ctx->last) {
        if (r == r->main) {
            b->last_buf = 1;

        } else {
            b->last_in_chain = 1;
        }

    } else {
        b->flush = 1;
    }

    ctx->flush = 0;

    return NGX_OK;
}


static void
ngx_http_hsync_cleanup(void *data)
{
    ngx_http_hsync_ctx_t  *ctx = data;

    hsync_encoder_free(ctx->encoder);
    ctx->encoder = NULL;
}


static ngx_int_t
ngx_http_hsync_ratio_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    int                    n;
    ngx_http_hsync_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_hsync_filter_module);

    if (ctx == NULL || ctx->encoder == NULL || !ctx->done) {
        v->not_found = 1;
        return NGX_OK;
    }

    v->data = ngx_pnalloc(r->pool, NGX_HTTP_HSYNC_RATIO_LEN);
    if (v->data == NULL) {
        return NGX_ERROR;
    }

    n = hsync_ratio(ctx->encoder, (char *) v->data, NGX_HTTP_HSYNC_RATIO_LEN);

    if (n <= 0) {
        v->not_found = 1;
        return NGX_OK;
    }

    v->len = n;
    v->valid = 1;
    v->no_cacheable = 0;
    v->not_found = 0;

    return NGX_OK;
}


static ngx_int_t
ngx_http_hsync_add_variables(ngx_conf_t *cf)
{
    ngx_http_variable_t  *var;

    var = ngx_http_add_variable(cf, &ngx_http_hsync_ratio, NGX_HTTP_VAR_NOHASH);
    if (var == NULL) {
        return NGX_ERROR;
    }

    var->get_handler = ngx_http_hsync_ratio_variable;

    return NGX_OK;
}


static void *
ngx_http_hsync_create_conf(ngx_conf_t *cf)
{
    ngx_http_hsync_conf_t  *conf;

    conf = ngx_pcalloc(cf->pool, sizeof(ngx_http_hsync_conf_t));
    if (conf == NULL) {
        return NULL;
    }

    /*
     * set by ngx_pcalloc():
     *
     *     conf->bufs.num = 0;
     *     conf->types = { NULL };
     *     conf->types_keys = NULL;
     *     conf->core = { 0 };
     */

    conf->enable = NGX_CONF_UNSET;
    conf->min_length = NGX_CONF_UNSET_SIZE;
    conf->max_signature = NGX_CONF_UNSET_SIZE;
    conf->level = NGX_CONF_UNSET;

    return conf;
}


static char *
ngx_http_hsync_merge_conf(ngx_conf_t *cf, void *parent, void *child)
{
    ngx_http_hsync_conf_t *prev = parent;
    ngx_http_hsync_conf_t *conf = child;

    hsync_config  d;

    hsync_config_default(&d);

    ngx_conf_merge_value(conf->enable, prev->enable, 0);

    ngx_conf_merge_bufs_value(conf->bufs, prev->bufs,
                              (128 * 1024) / ngx_pagesize, ngx_pagesize);

    ngx_conf_merge_size_value(conf->min_length, prev->min_length,
                              (size_t) d.min_length);
    ngx_conf_merge_size_value(conf->max_signature, prev->max_signature,
                              (size_t) d.max_signature);
    ngx_conf_merge_value(conf->level, prev->level, d.level);

    if (ngx_http_merge_types(cf, &conf->types_keys, &conf->types,
                             &prev->types_keys, &prev->types,
                             ngx_http_html_default_types)
        != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    conf->core = d;
    conf->core.min_length = conf->min_length;
    conf->core.max_signature = conf->max_signature;
    conf->core.level = (int) conf->level;

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_http_hsync_filter_init(ngx_conf_t *cf)
{
    ngx_http_next_header_filter = ngx_http_top_header_filter;
    ngx_http_top_header_filter = ngx_http_hsync_header_filter;

    ngx_http_next_body_filter = ngx_http_top_body_filter;
    ngx_http_top_body_filter = ngx_http_hsync_body_filter;

    return NGX_OK;
}
