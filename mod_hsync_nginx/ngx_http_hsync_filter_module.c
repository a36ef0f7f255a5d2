
/*
 * ngx_http_hsync_filter_module: sends responses as hsync deltas against
 * the client's cached copy (Accept-Encoding: hsync, Hsync-Signature).
 *
 * A thin shim over the hsync core (core/include/hsync.h, ABI 4): the core
 * makes every decision about the request, the response and the signature,
 * and every header edit, so that nginx and Apache agree. This file keeps
 * nginx's own early outs ("hsync" off, subrequests, "hsync_types"), hands
 * the core every request and response header line, applies the edits it
 * returns (keeping nginx's header pointers consistent) and streams the
 * body through the core with bounded buffers.
 *
 * With "hsync_dictionary on" (RFC 9842 compression dictionaries, docs/
 * protocol.md section 7) the same body path also carries responses the
 * core sends as dcz, or as they are while it copies them into the version
 * store or inserts a <link> into their head; and a rewrite-phase handler
 * answers the module's own dictionary URLs from the store (hsync_serve).
 *
 * With "hsync_feed on" or "hsync_feed_implicit on" (docs/protocol.md
 * section 8) a feed response (hsync_feed_check) is held: its headers are
 * not passed on, its body is copied into one pool buffer (at most
 * HSYNC_FEED_MAX_BYTES: past it, everything goes on as it came), and at
 * its end the core answers with the status (200, 226 or 304), the header
 * edits and the body (hsync_feed_process). A whole 200 then goes through
 * the hsync/dcz decision like any response; a truncated one or a 304
 * does not.
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <hsync.h>


/* hsync and gzip never both hold data for one request */
#define NGX_HTTP_HSYNC_BUFFERED  NGX_HTTP_GZIP_BUFFERED

#define NGX_HTTP_HSYNC_MSG_LEN   256
#define NGX_HTTP_HSYNC_RATIO_LEN 32


/* "hsync_dictionary_store": one version store per http{} block */

typedef struct {
    ngx_str_t            store;
    off_t                max_size;
} ngx_http_hsync_main_conf_t;


typedef struct {
    ngx_flag_t           enable;
    ngx_flag_t           vary;
    ngx_flag_t           dictionary;
    ngx_flag_t           feed;
    ngx_flag_t           feed_implicit;

    /* hsync_feed_types, its words joined by spaces (NULL data: unset) */
    ngx_str_t            feed_types;

    ngx_str_t            dict_match;

    ngx_hash_t           types;
    ngx_array_t         *types_keys;

    ngx_bufs_t           bufs;

    size_t               min_length;
    size_t               max_signature;
    ngx_int_t            level;

    hsync_config         core;
} ngx_http_hsync_conf_t;


typedef struct {
    hsync_response      *response;

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
    unsigned             failed:1;
    /* a dictionary the module answered itself: no filtering of it */
    unsigned             served:1;

    /* a feed response whose headers are held while its body is buffered */
    unsigned             feed_hold:1;

    /* the feed step's answer (hsync_feed_process), for $hsync_coding */
    hsync_response      *feed_response;

    u_char              *feed_data;
    size_t               feed_len;
    size_t               feed_cap;
} ngx_http_hsync_ctx_t;


/*
 * A response header nginx also keeps behind a pointer in r->headers_out
 * (offset), which other filters read instead of the lines.
 */

typedef struct {
    ngx_str_t            name;
    size_t               offset;
} ngx_http_hsync_special_t;


static ngx_int_t ngx_http_hsync_type_ok(ngx_http_request_t *r,
    ngx_http_hsync_conf_t *conf);
static ngx_int_t ngx_http_hsync_header(ngx_http_request_t *r,
    ngx_http_hsync_conf_t *conf);
static ngx_int_t ngx_http_hsync_exchange(ngx_http_request_t *r,
    hsync_exchange *x);
static ngx_int_t ngx_http_hsync_feed_hold(ngx_http_request_t *r,
    ngx_http_hsync_conf_t *conf);
static ngx_int_t ngx_http_hsync_feed_body(ngx_http_request_t *r,
    ngx_http_hsync_ctx_t *ctx, ngx_chain_t *in);
static ngx_int_t ngx_http_hsync_feed_give_up(ngx_http_request_t *r,
    ngx_http_hsync_ctx_t *ctx, ngx_chain_t *rest);
static ngx_int_t ngx_http_hsync_feed_send(ngx_http_request_t *r,
    ngx_http_hsync_ctx_t *ctx);
static ngx_int_t ngx_http_hsync_body_filter(ngx_http_request_t *r,
    ngx_chain_t *in);
static ngx_int_t ngx_http_hsync_fields(ngx_http_request_t *r,
    ngx_list_t *headers, ngx_uint_t live_only, const hsync_field *extra,
    size_t nextra, const hsync_field **fields, size_t *n);
static ngx_int_t ngx_http_hsync_content_type(ngx_http_request_t *r,
    hsync_field *f);
static ngx_int_t ngx_http_hsync_apply(ngx_http_request_t *r,
    const hsync_edit *e);
static ngx_int_t ngx_http_hsync_serve_handler(ngx_http_request_t *r);
static void ngx_http_hsync_sync(ngx_http_request_t *r,
    ngx_http_hsync_special_t *s, ngx_table_elt_t *h);
static ngx_int_t ngx_http_hsync_encode(ngx_http_request_t *r,
    ngx_http_hsync_ctx_t *ctx);
static ngx_int_t ngx_http_hsync_copy(ngx_http_request_t *r,
    ngx_http_hsync_ctx_t *ctx, ngx_http_hsync_conf_t *conf);
static void ngx_http_hsync_cleanup(void *data);

static ngx_int_t ngx_http_hsync_ratio_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);
static ngx_int_t ngx_http_hsync_coding_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);
static char *ngx_http_hsync_store(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_hsync_feed_types(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);

static ngx_int_t ngx_http_hsync_add_variables(ngx_conf_t *cf);
static ngx_int_t ngx_http_hsync_filter_init(ngx_conf_t *cf);
static void *ngx_http_hsync_create_main_conf(ngx_conf_t *cf);
static char *ngx_http_hsync_init_main_conf(ngx_conf_t *cf, void *conf);
static void *ngx_http_hsync_create_conf(ngx_conf_t *cf);
static char *ngx_http_hsync_merge_conf(ngx_conf_t *cf, void *parent,
    void *child);


static ngx_http_hsync_special_t  ngx_http_hsync_specials[] = {
    { ngx_string("Content-Length"),
      offsetof(ngx_http_headers_out_t, content_length) },
    { ngx_string("Content-Encoding"),
      offsetof(ngx_http_headers_out_t, content_encoding) },
    { ngx_string("Accept-Ranges"),
      offsetof(ngx_http_headers_out_t, accept_ranges) },
    { ngx_string("ETag"), offsetof(ngx_http_headers_out_t, etag) },
    { ngx_string("Last-Modified"),
      offsetof(ngx_http_headers_out_t, last_modified) },
    { ngx_null_string, 0 }
};


/*
 * The default hsync_types: pages, and feeds as Debian's nginx types them
 * (mime.types maps .atom, .rss and .xml to these), since feed readers
 * poll the same URL again and again. An hsync_types list always has
 * text/html too, as gzip_types does.
 */
static ngx_str_t  ngx_http_hsync_default_types[] = {
    ngx_string("text/html"),
    ngx_string("application/atom+xml"),
    ngx_string("application/rss+xml"),
    ngx_string("text/xml"),
    ngx_null_string
};


static ngx_command_t  ngx_http_hsync_filter_commands[] = {

    { ngx_string("hsync"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_HTTP_LIF_CONF
                        |NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_hsync_conf_t, enable),
      NULL },

    { ngx_string("hsync_vary"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_hsync_conf_t, vary),
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
      NULL },

    { ngx_string("hsync_dictionary"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_hsync_conf_t, dictionary),
      NULL },

    { ngx_string("hsync_dictionary_store"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE12,
      ngx_http_hsync_store,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("hsync_dictionary_match"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_hsync_conf_t, dict_match),
      NULL },

    { ngx_string("hsync_feed"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_hsync_conf_t, feed),
      NULL },

    { ngx_string("hsync_feed_implicit"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_hsync_conf_t, feed_implicit),
      NULL },

    { ngx_string("hsync_feed_types"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_1MORE,
      ngx_http_hsync_feed_types,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_hsync_conf_t, feed_types),
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_http_hsync_filter_module_ctx = {
    ngx_http_hsync_add_variables,          /* preconfiguration */
    ngx_http_hsync_filter_init,            /* postconfiguration */

    ngx_http_hsync_create_main_conf,       /* create main configuration */
    ngx_http_hsync_init_main_conf,         /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    ngx_http_hsync_create_conf,            /* create location configuration */
    ngx_http_hsync_merge_conf              /* merge location configuration */
};


static void ngx_http_hsync_exit_process(ngx_cycle_t *cycle);

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
    ngx_http_hsync_exit_process,           /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


/*
 * At a worker's exit, what the core kept between requests (its pools and
 * caches, each bounded): for whoever reads a debug log to size a server.
 */
static void
ngx_http_hsync_exit_process(ngx_cycle_t *cycle)
{
    ngx_log_debug1(NGX_LOG_DEBUG_CORE, cycle->log, 0,
                   "hsync: worker exiting, the core kept %uL bytes in its pools and caches",
                   (uint64_t) hsync_cached_bytes());
}


static ngx_str_t  ngx_http_hsync_ratio = ngx_string("hsync_ratio");
static ngx_str_t  ngx_http_hsync_coding = ngx_string("hsync_coding");

static ngx_http_output_header_filter_pt  ngx_http_next_header_filter;
static ngx_http_output_body_filter_pt    ngx_http_next_body_filter;


/*
 * The header phase: the core decides with every request and response
 * header line, its edits are applied whatever it decided (a response left
 * alone may still need Vary; a 304 or a HEAD the validators an hsync
 * response would have had), and only an engaged response gets a body
 * context. 304s and HEAD responses come through here like any other (the
 * not_modified filter runs before this one; r->header_only is set for
 * them later, by ngx_http_header_filter, which writes the edited lines).
 *
 * The headers filter (add_header, expires) also runs before this one, so
 * the core sees the Cache-Control it adds (a fresh response is its own
 * dictionary); gzip runs after it, so a response sent as it is (stored,
 * or given a <link>) may still be gzipped, and a dcz one, which carries
 * Content-Encoding by then, is not.
 */

static ngx_int_t
ngx_http_hsync_header_filter(ngx_http_request_t *r)
{
    ngx_int_t               rc;
    ngx_http_hsync_ctx_t   *ctx;
    ngx_http_hsync_conf_t  *conf;

    conf = ngx_http_get_module_loc_conf(r, ngx_http_hsync_filter_module);

    ctx = ngx_http_get_module_ctx(r, ngx_http_hsync_filter_module);

    if (ctx && ctx->served) {
        /*
         * A dictionary the module serves itself (its fields are the
         * core's already): deciding on it again would store it as a
         * version of its own URL.
         */
        ngx_log_debug0(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                       "hsync header filter: own dictionary response");
        return ngx_http_next_header_filter(r);
    }

    if (ctx && ctx->feed_hold) {
        /*
         * Headers again while a feed response was held (an error page
         * after an upstream failed mid-body): the held one is dropped.
         */
        ctx->feed_hold = 0;
        ctx->feed_len = 0;

    } else if (ctx == NULL && r == r->main
               && (conf->feed || conf->feed_implicit))
    {
        rc = ngx_http_hsync_feed_hold(r, conf);

        if (rc != NGX_DECLINED) {
            return rc;
        }
    }

    return ngx_http_hsync_header(r, conf);
}


/*
 * The request and response header lines as the core reads them (the
 * strings are nginx's, the arrays in the pool).
 */

static ngx_int_t
ngx_http_hsync_exchange(ngx_http_request_t *r, hsync_exchange *x)
{
    u_char       *p;
    size_t        nextra;
    hsync_field  *extra;

    ngx_memzero(x, sizeof(hsync_exchange));

    extra = ngx_pcalloc(r->pool, 2 * sizeof(hsync_field));
    if (extra == NULL) {
        return NGX_ERROR;
    }

    x->method = (const char *) r->method_name.data;
    x->method_len = r->method_name.len;
    x->status = (unsigned int) r->headers_out.status;
    x->content_length = (int64_t) r->headers_out.content_length_n;

    /*
     * The target as the client sent it (after a try_files or error_page
     * redirection too): the key of the page's versions in the store and
     * the path a dictionary is announced for are the client's URL.
     */
    x->uri = (const char *) r->unparsed_uri.data;
    x->uri_len = r->unparsed_uri.len;

    if (ngx_http_hsync_content_type(r, &extra[0]) != NGX_OK) {
        return NGX_ERROR;
    }

    nextra = extra[0].name ? 1 : 0;

    /*
     * Last-Modified, which nginx writes from last_modified_time when it
     * has no line for it (static files): a truncated feed must not have
     * one, and the core removes only the lines it is shown.
     */

    if (r->headers_out.last_modified == NULL
        && r->headers_out.last_modified_time != -1)
    {
        p = ngx_pnalloc(r->pool, sizeof("Mon, 28 Sep 1970 06:00:00 GMT") - 1);
        if (p == NULL) {
            return NGX_ERROR;
        }

        extra[nextra].name = "Last-Modified";
        extra[nextra].name_len = sizeof("Last-Modified") - 1;
        extra[nextra].value = (const char *) p;
        extra[nextra].value_len =
                  ngx_http_time(p, r->headers_out.last_modified_time) - p;
        nextra++;
    }

    if (ngx_http_hsync_fields(r, &r->headers_in.headers, 0, NULL, 0,
                              &x->request, &x->request_len)
           != NGX_OK
        || ngx_http_hsync_fields(r, &r->headers_out.headers, 1,
                                 extra, nextra,
                                 &x->response, &x->response_len)
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    return NGX_OK;
}


/*
 * The hsync/dcz decision for a response whose headers are ready (from
 * the header filter, or from the body filter once a held feed response
 * is complete), then the next header filter.
 */

static ngx_int_t
ngx_http_hsync_header(ngx_http_request_t *r, ngx_http_hsync_conf_t *conf)
{
    int                     rc;
    char                    msg[NGX_HTTP_HSYNC_MSG_LEN];
    size_t                  i, n;
    hsync_exchange          x;
    hsync_response         *resp;
    const hsync_edit       *edits;
    ngx_pool_cleanup_t     *cln;
    ngx_http_hsync_ctx_t   *ctx;

    if (!conf->enable
        || r != r->main
        || !ngx_http_hsync_type_ok(r, conf))
    {
        return ngx_http_next_header_filter(r);
    }

    if (ngx_http_hsync_exchange(r, &x) != NGX_OK) {
        return NGX_ERROR;
    }

    msg[0] = '\0';
    resp = NULL;

    rc = hsync_decide(&conf->core, &x, &resp, msg, sizeof(msg));

    if (resp == NULL) {
        /* a bug on one side of the ABI: send the response as it is */
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "hsync: %s", hsync_strerror(rc));
        return ngx_http_next_header_filter(r);
    }

    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == NULL) {
        hsync_response_free(resp);
        return NGX_ERROR;
    }

    cln->handler = ngx_http_hsync_cleanup;
    cln->data = resp;

    n = hsync_response_edits(resp, &edits);

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "hsync header filter: decide %d, %uz edits, coding \"%s\"",
                   rc, n, hsync_coding(resp));

    for (i = 0; i < n; i++) {
        if (ngx_http_hsync_apply(r, &edits[i]) != NGX_OK) {
            return NGX_ERROR;
        }
    }

    if (rc != HSYNC_OK) {
        if (rc < 0) {
            ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                          "hsync: %s", msg[0] ? msg : hsync_strerror(rc));
        }

        return ngx_http_next_header_filter(r);
    }

    ctx = ngx_http_get_module_ctx(r, ngx_http_hsync_filter_module);

    if (ctx == NULL) {
        ctx = ngx_pcalloc(r->pool, sizeof(ngx_http_hsync_ctx_t));
        if (ctx == NULL) {
            return NGX_ERROR;
        }

        ngx_http_set_ctx(r, ctx, ngx_http_hsync_filter_module);
    }

    ctx->response = resp;
    ctx->last_out = &ctx->out;

    r->main_filter_need_in_memory = 1;

    return ngx_http_next_header_filter(r);
}


/*
 * hsync_types, as gzip_types. The not_modified filter clears the content
 * type of the 304s it makes (only the length: the type and its length
 * without parameters stay), so for those the type the 200 had is tested;
 * a 304 with no type at all (an upstream's) is left alone, as for any
 * response without a type.
 */

static ngx_int_t
ngx_http_hsync_type_ok(ngx_http_request_t *r, ngx_http_hsync_conf_t *conf)
{
    void  *found;

    if (r->headers_out.status != NGX_HTTP_NOT_MODIFIED
        || r->headers_out.content_type.len != 0
        || r->headers_out.content_type.data == NULL
        || r->headers_out.content_type_len == 0)
    {
        return ngx_http_test_content_type(r, &conf->types) != NULL;
    }

    r->headers_out.content_type.len = r->headers_out.content_type_len;
    found = ngx_http_test_content_type(r, &conf->types);
    r->headers_out.content_type.len = 0;

    return found != NULL;
}


/*
 * The Content-Type line nginx will write, which it keeps outside the
 * header list (headers_out.content_type, set by the static handler and
 * by the upstream module alike, with the charset filter's charset), as
 * ngx_http_header_filter writes it: the core needs it (an HTML page gets
 * a <link>, a stored version keeps its type). f->name is NULL when the
 * response has no type.
 */

static ngx_int_t
ngx_http_hsync_content_type(ngx_http_request_t *r, hsync_field *f)
{
    u_char                  *p;
    size_t                   len, base;
    ngx_http_headers_out_t  *ho;

    ngx_memzero(f, sizeof(hsync_field));

    ho = &r->headers_out;

    base = ho->content_type.len;

    if (base == 0 && ho->status == NGX_HTTP_NOT_MODIFIED
        && ho->content_type.data != NULL)
    {
        /*
         * A 304 of the not_modified filter (see ngx_http_hsync_type_ok):
         * the 200's type, without its parameters, so that the core gives
         * the 304 the ETag the 200 has (weak when a dictionary's element
         * goes into an HTML page).
         */
        base = ho->content_type_len;
    }

    if (base == 0) {
        return NGX_OK;
    }

    len = base;

    if (ho->content_type_len == ho->content_type.len && ho->charset.len) {
        len += sizeof("; charset=") - 1 + ho->charset.len;
    }

    p = ngx_pnalloc(r->pool, len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    f->name = "Content-Type";
    f->name_len = sizeof("Content-Type") - 1;
    f->value = (const char *) p;
    f->value_len = len;

    p = ngx_cpymem(p, ho->content_type.data, base);

    if (ho->content_type_len == ho->content_type.len && ho->charset.len) {
        p = ngx_cpymem(p, "; charset=", sizeof("; charset=") - 1);
        ngx_memcpy(p, ho->charset.data, ho->charset.len);
    }

    return NGX_OK;
}


/*
 * The lines of a header list as hsync_field entries (pool memory; the
 * strings are nginx's): the nextra lines of extra first, then every
 * entry, or with live_only those not removed (hash 0), which are the
 * lines nginx will send.
 */

static ngx_int_t
ngx_http_hsync_fields(ngx_http_request_t *r, ngx_list_t *headers,
    ngx_uint_t live_only, const hsync_field *extra, size_t nextra,
    const hsync_field **fields, size_t *n)
{
    size_t            count;
    ngx_uint_t        i;
    hsync_field      *f;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;

    count = 0;

    for (part = &headers->part; part; part = part->next) {
        h = part->elts;

        for (i = 0; i < part->nelts; i++) {
            if (!live_only || h[i].hash != 0) {
                count++;
            }
        }
    }

    *fields = NULL;
    *n = 0;

    if (count == 0 && nextra == 0) {
        return NGX_OK;
    }

    f = ngx_palloc(r->pool, (count + nextra) * sizeof(hsync_field));
    if (f == NULL) {
        return NGX_ERROR;
    }

    *fields = f;

    for (i = 0; i < nextra; i++) {
        *f++ = extra[i];
        (*n)++;
        count++;
    }

    for (part = &headers->part; part; part = part->next) {
        h = part->elts;

        for (i = 0; i < part->nelts && *n < count; i++) {
            if (live_only && h[i].hash == 0) {
                continue;
            }

            f->name = (const char *) h[i].key.data;
            f->name_len = h[i].key.len;
            f->value = (const char *) h[i].value.data;
            f->value_len = h[i].value.len;

            f++;
            (*n)++;
        }
    }

    return NGX_OK;
}


/*
 * Applies one edit of the core. SET: the first line of the field takes
 * the value (one is added if there is none), every other line of it is
 * removed; REMOVE: every line of it is removed; APPEND: one line is added
 * and the others stay (Link). Then nginx's pointer to the field, if it
 * keeps one, follows (for APPEND only when it had none: the pointer is
 * to the first line).
 */

static ngx_int_t
ngx_http_hsync_apply(ngx_http_request_t *r, const hsync_edit *e)
{
    ngx_uint_t                 i;
    ngx_list_part_t           *part;
    ngx_table_elt_t           *h, *line, *first;
    ngx_http_hsync_special_t  *s;

    if ((e->op != HSYNC_EDIT_SET && e->op != HSYNC_EDIT_REMOVE
         && e->op != HSYNC_EDIT_APPEND)
        || e->name == NULL || e->name_len == 0
        || (e->op != HSYNC_EDIT_REMOVE && e->value == NULL && e->value_len))
    {
        ngx_log_error(NGX_LOG_ALERT, r->connection->log, 0,
                      "hsync: unknown header edit %d ignored", (int) e->op);
        return NGX_OK;
    }

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "hsync edit %d \"%*s\"", (int) e->op,
                   e->name_len, e->name);

    line = NULL;
    first = NULL;

    for (part = &r->headers_out.headers.part; part; part = part->next) {
        h = part->elts;

        for (i = 0; i < part->nelts; i++) {
            if (h[i].hash == 0
                || h[i].key.len != e->name_len
                || ngx_strncasecmp(h[i].key.data, (u_char *) e->name,
                                   e->name_len)
                   != 0)
            {
                continue;
            }

            if (first == NULL) {
                first = &h[i];

                if (e->op != HSYNC_EDIT_REMOVE) {
                    /* SET: the first line takes the value; APPEND: kept */
                    line = (e->op == HSYNC_EDIT_SET) ? &h[i] : NULL;
                    continue;
                }
            }

            if (e->op == HSYNC_EDIT_APPEND) {
                continue;
            }

            h[i].hash = 0;
        }
    }

    if (e->op != HSYNC_EDIT_REMOVE) {

        if (line == NULL) {
            line = ngx_list_push(&r->headers_out.headers);
            if (line == NULL) {
                return NGX_ERROR;
            }

            line->key.data = ngx_pnalloc(r->pool, e->name_len);
            if (line->key.data == NULL) {
                return NGX_ERROR;
            }

            line->key.len = e->name_len;
            ngx_memcpy(line->key.data, e->name, e->name_len);
            line->lowcase_key = NULL;
        }

        line->hash = 1;
#if (nginx_version >= 1023000)
        line->next = NULL;
#endif

        line->value.len = e->value_len;
        line->value.data = ngx_pnalloc(r->pool, e->value_len + 1);
        if (line->value.data == NULL) {
            return NGX_ERROR;
        }

        if (e->value_len) {
            ngx_memcpy(line->value.data, e->value, e->value_len);
        }

        line->value.data[e->value_len] = '\0';
    }

    if (e->op == HSYNC_EDIT_APPEND && first != NULL) {
        /* nginx's pointer, if it keeps one, stays on the first line */
        return NGX_OK;
    }

    for (s = ngx_http_hsync_specials; s->name.len; s++) {
        if (s->name.len == e->name_len
            && ngx_strncasecmp(s->name.data, (u_char *) e->name, e->name_len)
               == 0)
        {
            ngx_http_hsync_sync(r, s, line);
            break;
        }
    }

    return NGX_OK;
}


/*
 * Keeps nginx's view of a header it holds behind a pointer consistent
 * with its one remaining line, or with its removal (h is NULL): the
 * pointer (gzip reads content_encoding, the not_modified filter and
 * If-Range the etag), and the values nginx keeps beside it, from which
 * ngx_http_header_filter would write a line of its own, and the range
 * filter decide to add Accept-Ranges and serve ranges.
 */

static void
ngx_http_hsync_sync(ngx_http_request_t *r, ngx_http_hsync_special_t *s,
    ngx_table_elt_t *h)
{
    ngx_http_headers_out_t  *ho;

    ho = &r->headers_out;

    *(ngx_table_elt_t **) ((u_char *) ho + s->offset) = h;

    if (s->offset == offsetof(ngx_http_headers_out_t, content_length)) {
        ho->content_length_n = h ? ngx_atoof(h->value.data, h->value.len)
                                 : -1;

    } else if (s->offset == offsetof(ngx_http_headers_out_t, last_modified)) {
        ho->last_modified_time = h ? ngx_parse_http_time(h->value.data,
                                                         h->value.len)
                                   : -1;

    } else if (s->offset == offsetof(ngx_http_headers_out_t, accept_ranges)
               && h == NULL)
    {
        r->allow_ranges = 0;
    }
}


/*
 * The module's own URLs: the dictionaries of RFC 9842, served from the
 * version store (hsync_serve decides which targets are its own, and the
 * whole response; this only sends it).
 *
 * Why the rewrite phase: the location is known by then, so the handler
 * runs only where "hsync_dictionary" is on for the location the URL falls
 * in (and reads that location's store settings); and it is before
 * everything that could answer the URL in the location's place: its own
 * "rewrite" and "return" (the rewrite module's handler is registered
 * before this one, and nginx runs a phase's handlers in the reverse order
 * of registration), access and limit modules, try_files (precontent) and
 * the content handler (static files, proxy_pass, fastcgi_pass). Only
 * "rewrite" and "return" at the server level (server-rewrite phase) come
 * first, as the administrator wrote them. Earlier, in post-read, only the
 * server's settings would be known.
 *
 * Only the client's own request is answered: not subrequests, and not
 * internal redirections (r->unparsed_uri is still the client's target
 * after an error_page or try_files fallback, which must not turn into a
 * dictionary).
 */

static ngx_int_t
ngx_http_hsync_serve_handler(ngx_http_request_t *r)
{
    int                     rc;
    size_t                  i, n, len;
    ngx_int_t               nrc;
    ngx_buf_t              *b;
    ngx_chain_t             out;
    hsync_exchange          x;
    hsync_response         *resp;
    const uint8_t          *body;
    const hsync_edit       *edits;
    u_char                 *p, *last;
    ngx_table_elt_t        *cc, **ccp;
    ngx_pool_cleanup_t     *cln;
    ngx_http_hsync_ctx_t   *ctx;
    ngx_http_hsync_conf_t  *conf;

    conf = ngx_http_get_module_loc_conf(r, ngx_http_hsync_filter_module);

    if (!conf->dictionary || r != r->main || r->internal) {
        return NGX_DECLINED;
    }

    if (ngx_http_get_module_ctx(r, ngx_http_hsync_filter_module) != NULL) {
        /* answered already (a rewrite ... last ran this phase again) */
        return NGX_DECLINED;
    }

    ngx_memzero(&x, sizeof(hsync_exchange));

    x.method = (const char *) r->method_name.data;
    x.method_len = r->method_name.len;
    x.uri = (const char *) r->unparsed_uri.data;
    x.uri_len = r->unparsed_uri.len;
    x.content_length = -1;

    resp = NULL;

    rc = hsync_serve(&conf->core, &x, &resp);

    if (rc != HSYNC_OK || resp == NULL) {
        if (rc < 0) {
            /* a bug on one side of the ABI: the location answers as usual */
            ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                          "hsync: %s", hsync_strerror(rc));
        }

        hsync_response_free(resp);
        return NGX_DECLINED;
    }

    /* the handle holds the body we send: freed with the request */

    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == NULL) {
        hsync_response_free(resp);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    cln->handler = ngx_http_hsync_cleanup;
    cln->data = resp;

    /* our filters leave this response alone (it is the core's already) */

    ctx = ngx_pcalloc(r->pool, sizeof(ngx_http_hsync_ctx_t));
    if (ctx == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx->served = 1;
    ngx_http_set_ctx(r, ctx, ngx_http_hsync_filter_module);

    nrc = ngx_http_discard_request_body(r);
    if (nrc != NGX_OK) {
        return nrc;
    }

    r->headers_out.status = hsync_response_status(resp);

    n = hsync_response_edits(resp, &edits);

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "hsync serve: \"%V\" status %ui, %uz fields",
                   &r->unparsed_uri, r->headers_out.status, n);

    for (i = 0; i < n; i++) {

        if (edits[i].op == HSYNC_EDIT_SET
            && edits[i].name_len == sizeof("Content-Type") - 1
            && ngx_strncasecmp((u_char *) edits[i].name,
                               (u_char *) "Content-Type",
                               sizeof("Content-Type") - 1)
               == 0)
        {
            /*
             * nginx writes the type from headers_out.content_type, which
             * gzip_types and charset read too: a dictionary is gzipped
             * like any response of its type.
             */
            len = edits[i].value_len;

            r->headers_out.content_type.data = ngx_pnalloc(r->pool, len + 1);
            if (r->headers_out.content_type.data == NULL) {
                return NGX_HTTP_INTERNAL_SERVER_ERROR;
            }

            if (len) {
                ngx_memcpy(r->headers_out.content_type.data, edits[i].value,
                           len);
            }

            r->headers_out.content_type.data[len] = '\0';
            r->headers_out.content_type.len = len;
            r->headers_out.content_type_len = len;
            r->headers_out.content_type_lowcase = NULL;

            /*
             * content_type_len is the type without its parameters, which
             * gzip_types compares, and the charset is kept apart, as
             * ngx_http_upstream_copy_content_type does for a proxied type
             */

            for (p = r->headers_out.content_type.data; *p; p++) {
                if (*p != ';') {
                    continue;
                }

                last = p;

                while (*++p == ' ') { /* void */ }

                if (*p == '\0') {
                    break;
                }

                if (ngx_strncasecmp(p, (u_char *) "charset=", 8) != 0) {
                    continue;
                }

                p += 8;

                r->headers_out.content_type_len =
                                     last - r->headers_out.content_type.data;

                if (*p == '"') {
                    p++;
                }

                last = r->headers_out.content_type.data + len;

                if (last > p && *(last - 1) == '"') {
                    last--;
                }

                r->headers_out.charset.len = last - p;
                r->headers_out.charset.data = p;

                break;
            }

            continue;
        }

        if (ngx_http_hsync_apply(r, &edits[i]) != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    /*
     * "expires" (the headers filter) edits the Cache-Control lines nginx
     * lists in headers_out.cache_control: list the core's, so that it is
     * replaced there rather than doubled by a second line.
     */

    cc = NULL;

    {
        ngx_uint_t        j;
        ngx_list_part_t  *part;
        ngx_table_elt_t  *h;

        for (part = &r->headers_out.headers.part; part; part = part->next) {
            h = part->elts;

            for (j = 0; j < part->nelts; j++) {
                if (h[j].hash != 0
                    && h[j].key.len == sizeof("Cache-Control") - 1
                    && ngx_strncasecmp(h[j].key.data,
                                       (u_char *) "Cache-Control",
                                       sizeof("Cache-Control") - 1)
                       == 0)
                {
                    cc = &h[j];
                }
            }
        }
    }

    if (cc && r->headers_out.cache_control.elts == NULL) {
        if (ngx_array_init(&r->headers_out.cache_control, r->pool, 1,
                           sizeof(ngx_table_elt_t *))
            != NGX_OK)
        {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        ccp = ngx_array_push(&r->headers_out.cache_control);
        if (ccp == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        *ccp = cc;
    }

    len = hsync_response_body(resp, &body);

    if (len == 0) {
        r->header_only = 1;
    }

    nrc = ngx_http_send_header(r);

    if (nrc == NGX_ERROR || nrc > NGX_OK || r->header_only) {
        return nrc;
    }

    b = ngx_calloc_buf(r->pool);
    if (b == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    b->pos = (u_char *) body;
    b->last = b->pos + len;
    b->memory = 1;
    b->last_buf = 1;
    b->last_in_chain = 1;

    out.buf = b;
    out.next = NULL;

    /* the rewrite phase's checker finalizes the request with this */

    return ngx_http_output_filter(r, &out);
}


/*
 * Feeds, step 1 (headers ready): a feed response the core wants whole is
 * held. NGX_OK: held (the next header filter is not called now);
 * NGX_DECLINED: not a feed response, go on as usual.
 */

static ngx_int_t
ngx_http_hsync_feed_hold(ngx_http_request_t *r, ngx_http_hsync_conf_t *conf)
{
    int                    rc;
    char                   msg[NGX_HTTP_HSYNC_MSG_LEN];
    hsync_exchange         x;
    ngx_http_hsync_ctx_t  *ctx;

    if (ngx_http_hsync_exchange(r, &x) != NGX_OK) {
        return NGX_ERROR;
    }

    msg[0] = '\0';

    rc = hsync_feed_check(&conf->core, &x, msg, sizeof(msg));

    if (rc != HSYNC_OK) {
        if (rc < 0) {
            ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                          "hsync feed: %s", hsync_strerror(rc));

        } else {
            ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                           "hsync feed: not held: %s", msg);
        }

        return NGX_DECLINED;
    }

    ctx = ngx_pcalloc(r->pool, sizeof(ngx_http_hsync_ctx_t));
    if (ctx == NULL) {
        return NGX_ERROR;
    }

    ctx->feed_hold = 1;
    ctx->last_out = &ctx->out;

    ngx_http_set_ctx(r, ctx, ngx_http_hsync_filter_module);

    /* the body comes in memory buffers (files read by the copy filter) */
    r->main_filter_need_in_memory = 1;

    ngx_log_debug0(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "hsync feed: headers held");

    return NGX_OK;
}


/*
 * Feeds, step 2: the body is copied into one pool buffer (the input
 * buffers are consumed, as the xslt filter does, so their owners reuse
 * them); at its end the core answers; past HSYNC_FEED_MAX_BYTES, or on a
 * buffer that is not in memory, the response goes on as it came.
 */

static ngx_int_t
ngx_http_hsync_feed_body(ngx_http_request_t *r, ngx_http_hsync_ctx_t *ctx,
    ngx_chain_t *in)
{
    size_t        size, cap;
    u_char       *p;
    ngx_buf_t    *b;
    ngx_uint_t    last;
    ngx_chain_t  *cl;

    last = 0;

    for (cl = in; cl; cl = cl->next) {
        b = cl->buf;

        if (!ngx_buf_in_memory(b) && ngx_buf_size(b)) {
            ngx_log_error(NGX_LOG_ALERT, r->connection->log, 0,
                          "hsync feed: buffer not in memory");
            return ngx_http_hsync_feed_give_up(r, ctx, cl);
        }

        size = ngx_buf_in_memory(b) ? (size_t) (b->last - b->pos) : 0;

        if (size > HSYNC_FEED_MAX_BYTES - ctx->feed_len) {
            ngx_log_debug0(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                           "hsync feed: longer than the bound, sent as is");
            return ngx_http_hsync_feed_give_up(r, ctx, cl);
        }

        if (size > ctx->feed_cap - ctx->feed_len) {
            cap = ctx->feed_cap ? ctx->feed_cap * 2 : 64 * 1024;

            if (ctx->feed_cap == 0 && r->headers_out.content_length_n > 0) {
                cap = (size_t) r->headers_out.content_length_n;
            }

            cap = ngx_max(cap, ctx->feed_len + size);
            cap = ngx_min(cap, (size_t) HSYNC_FEED_MAX_BYTES);

            p = ngx_palloc(r->pool, cap);
            if (p == NULL) {
                return NGX_ERROR;
            }

            if (ctx->feed_len) {
                ngx_memcpy(p, ctx->feed_data, ctx->feed_len);
            }

            if (ctx->feed_data) {
                ngx_pfree(r->pool, ctx->feed_data);
            }

            ctx->feed_data = p;
            ctx->feed_cap = cap;
        }

        if (size) {
            ngx_memcpy(ctx->feed_data + ctx->feed_len, b->pos, size);
            ctx->feed_len += size;
        }

        b->pos = b->last;

        if (b->in_file) {
            b->file_pos = b->file_last;
        }

        if (b->last_buf) {
            last = 1;
        }
    }

    if (!last) {
        return NGX_OK;
    }

    return ngx_http_hsync_feed_send(r, ctx);
}


/*
 * The held response goes on as it came: its headers (through the hsync
 * decision, as any response's), the bytes buffered so far, then rest
 * (the links of the input not consumed; NULL: the buffered bytes were
 * the whole body).
 */

static ngx_int_t
ngx_http_hsync_feed_give_up(ngx_http_request_t *r, ngx_http_hsync_ctx_t *ctx,
    ngx_chain_t *rest)
{
    ngx_int_t               rc;
    ngx_buf_t              *b;
    ngx_chain_t            *cl;
    ngx_http_hsync_conf_t  *conf;

    conf = ngx_http_get_module_loc_conf(r, ngx_http_hsync_filter_module);

    ctx->feed_hold = 0;

    rc = ngx_http_hsync_header(r, conf);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    if (ctx->feed_len == 0 && rest) {
        return ngx_http_hsync_body_filter(r, rest);
    }

    b = ngx_calloc_buf(r->pool);
    if (b == NULL) {
        return NGX_ERROR;
    }

    cl = ngx_alloc_chain_link(r->pool);
    if (cl == NULL) {
        return NGX_ERROR;
    }

    b->pos = ctx->feed_data;
    b->last = ctx->feed_data + ctx->feed_len;
    b->memory = ctx->feed_len ? 1 : 0;
    b->last_buf = rest ? 0 : 1;
    b->last_in_chain = rest ? 0 : 1;

    cl->buf = b;
    cl->next = rest;

    return ngx_http_hsync_body_filter(r, cl);
}


/*
 * The whole body is there: the core's status, edits and body go out. A
 * whole 200 (no truncation) or a 304 then goes through the hsync decision
 * as any response does; a 226 or a truncated 200 does not.
 */

static ngx_int_t
ngx_http_hsync_feed_send(ngx_http_request_t *r, ngx_http_hsync_ctx_t *ctx)
{
    int                     rc;
    char                    msg[NGX_HTTP_HSYNC_MSG_LEN];
    size_t                  i, n, len;
    ngx_int_t               nrc;
    ngx_buf_t              *b;
    ngx_chain_t             out;
    ngx_uint_t              status, whole;
    hsync_exchange          x;
    hsync_response         *resp;
    const uint8_t          *body;
    const hsync_edit       *edits;
    ngx_pool_cleanup_t     *cln;
    ngx_http_hsync_conf_t  *conf;

    conf = ngx_http_get_module_loc_conf(r, ngx_http_hsync_filter_module);

    if (ngx_http_hsync_exchange(r, &x) != NGX_OK) {
        return NGX_ERROR;
    }

    msg[0] = '\0';
    resp = NULL;

    rc = hsync_feed_process(&conf->core, &x, ctx->feed_data, ctx->feed_len,
                            &resp, msg, sizeof(msg));

    if (resp == NULL) {
        /* a bug on one side of the ABI: send the response as it is */
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "hsync feed: %s", hsync_strerror(rc));
        return ngx_http_hsync_feed_give_up(r, ctx, NULL);
    }

    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == NULL) {
        hsync_response_free(resp);
        return NGX_ERROR;
    }

    cln->handler = ngx_http_hsync_cleanup;
    cln->data = resp;

    ctx->feed_hold = 0;
    ctx->feed_response = resp;

    status = hsync_response_status(resp);

    /*
     * A whole 200 may be coded as any response; a 304 gets the fields a
     * coded one would have had (Vary, the ETag as weakened), as every 304
     * does; a truncated body is never coded.
     */
    whole = (hsync_coding(resp)[0] == '\0'
             && (status == NGX_HTTP_OK || status == NGX_HTTP_NOT_MODIFIED));

    n = hsync_response_edits(resp, &edits);

    ngx_log_debug4(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "hsync feed: %ui, %uz edits, coding \"%s\": %s",
                   status, n, hsync_coding(resp), msg);

    for (i = 0; i < n; i++) {
        if (ngx_http_hsync_apply(r, &edits[i]) != NGX_OK) {
            return NGX_ERROR;
        }
    }

    len = hsync_response_body(resp, &body);

    r->headers_out.status = status;

    /* an upstream's "200 OK" would otherwise be the status line */
    if (status == 226) {
        ngx_str_set(&r->headers_out.status_line, "226 IM Used");

    } else {
        r->headers_out.status_line.len = 0;
    }

    /* nginx writes Content-Length from content_length_n */
    if (r->headers_out.content_length) {
        r->headers_out.content_length->hash = 0;
        r->headers_out.content_length = NULL;
    }

    if (status == NGX_HTTP_NOT_MODIFIED) {
        r->headers_out.content_length_n = -1;
        r->header_only = 1;

    } else {
        r->headers_out.content_length_n = (off_t) len;
    }

    if (whole) {
        nrc = ngx_http_hsync_header(r, conf);

    } else {
        nrc = ngx_http_next_header_filter(r);
    }

    if (nrc == NGX_ERROR || nrc > NGX_OK || r->header_only) {
        return nrc;
    }

    b = ngx_calloc_buf(r->pool);
    if (b == NULL) {
        return NGX_ERROR;
    }

    b->pos = (u_char *) body;
    b->last = b->pos + len;
    b->memory = len ? 1 : 0;
    b->last_buf = 1;
    b->last_in_chain = 1;

    out.buf = b;
    out.next = NULL;

    return ngx_http_hsync_body_filter(r, &out);
}


static ngx_int_t
ngx_http_hsync_body_filter(ngx_http_request_t *r, ngx_chain_t *in)
{
    ngx_int_t               rc;
    ngx_http_hsync_ctx_t   *ctx;
    ngx_http_hsync_conf_t  *conf;

    ctx = ngx_http_get_module_ctx(r, ngx_http_hsync_filter_module);

    if (ctx && ctx->feed_hold) {
        return ngx_http_hsync_feed_body(r, ctx, in);
    }

    /*
     * not engaged (a feed response only, or nothing), or a dictionary of
     * the module's own (sent as it is)
     */

    if (ctx == NULL || ctx->served || ctx->response == NULL
        || r->header_only)
    {
        return ngx_http_next_body_filter(r, in);
    }

    if (ctx->failed) {
        /* never the rest of the body, nor its end, after a broken delta */
        return NGX_ERROR;
    }

    if (ctx->done) {
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
            ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                           "hsync body filter: done, coding \"%s\"",
                           hsync_coding(ctx->response));
            return rc;
        }
    }

failed:

    /*
     * The delta cannot be completed: NGX_ERROR ends the request and closes
     * the connection without the end of the response (no last chunk), so
     * that the client sees it truncated, never a complete-looking body.
     */

    ctx->done = 1;
    ctx->failed = 1;
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

    rc = hsync_encode(ctx->response, b->pos, len, flags,
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
    hsync_response_free(data);
}


static ngx_int_t
ngx_http_hsync_ratio_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    size_t                 n;
    ngx_http_hsync_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_hsync_filter_module);

    if (ctx == NULL || !ctx->done || ctx->failed) {
        v->not_found = 1;
        return NGX_OK;
    }

    v->data = ngx_pnalloc(r->pool, NGX_HTTP_HSYNC_RATIO_LEN);
    if (v->data == NULL) {
        return NGX_ERROR;
    }

    n = hsync_ratio(ctx->response, (char *) v->data, NGX_HTTP_HSYNC_RATIO_LEN);

    if (n == 0) {
        v->not_found = 1;
        return NGX_OK;
    }

    v->len = n;
    v->valid = 1;
    v->no_cacheable = 0;
    v->not_found = 0;

    return NGX_OK;
}


/*
 * $hsync_coding: the content coding the core gave the response, "hsync"
 * or "dcz"; else "feed" when the feed step truncated it; empty when it
 * sent the body as it is or left it alone.
 */

static ngx_int_t
ngx_http_hsync_coding_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    const char            *name;
    ngx_http_hsync_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_hsync_filter_module);

    name = hsync_coding(ctx ? ctx->response : NULL);

    if (name && name[0] == '\0' && ctx && ctx->feed_response) {
        name = hsync_coding(ctx->feed_response);
    }

    v->data = (u_char *) name;
    v->len = name ? ngx_strlen(name) : 0;
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

    var = ngx_http_add_variable(cf, &ngx_http_hsync_coding,
                                NGX_HTTP_VAR_NOHASH);
    if (var == NULL) {
        return NGX_ERROR;
    }

    var->get_handler = ngx_http_hsync_coding_variable;

    return NGX_OK;
}


/*
 * hsync_dictionary_store PATH [max_size=SIZE]: the version store, shared
 * by the workers. The directory and the subdirectories the core writes
 * in (core/src/store: v/, p/, tmp/) are added to nginx's paths, like a
 * proxy_temp_path: ngx_create_paths creates them in the master, at each
 * start and reload, and chowns them to the workers' user (ccf->user, from
 * the "user" directive or nginx's default when started as root), so that
 * the workers can write the files the core keeps there (versions, the
 * ledger, its lock). The parent directory must exist.
 */

static char *
ngx_http_hsync_store(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_hsync_main_conf_t *hmcf = conf;

    u_char       *p;
    off_t         size;
    ngx_str_t    *value, s;
    ngx_uint_t    i;
    ngx_path_t   *path;
    static char  *subdirs[] = { "", "/v", "/p", "/tmp" };

    if (hmcf->store.data) {
        return "is duplicate";
    }

    value = cf->args->elts;

    hmcf->store = value[1];

    if (ngx_conf_full_name(cf->cycle, &hmcf->store, 0) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    /* the core joins its names to it: no trailing slash */

    while (hmcf->store.len > 1
           && hmcf->store.data[hmcf->store.len - 1] == '/')
    {
        hmcf->store.len--;
    }

    if (cf->args->nelts == 3) {
        if (ngx_strncmp(value[2].data, "max_size=", 9) != 0) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid parameter \"%V\"", &value[2]);
            return NGX_CONF_ERROR;
        }

        s.data = value[2].data + 9;
        s.len = value[2].len - 9;

        size = ngx_parse_offset(&s);
        if (size == NGX_ERROR) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid max_size value \"%V\"", &value[2]);
            return NGX_CONF_ERROR;
        }

        hmcf->max_size = size;
    }

    for (i = 0; i < sizeof(subdirs) / sizeof(subdirs[0]); i++) {
        path = ngx_pcalloc(cf->pool, sizeof(ngx_path_t));
        if (path == NULL) {
            return NGX_CONF_ERROR;
        }

        s.len = hmcf->store.len + ngx_strlen(subdirs[i]);
        s.data = ngx_pnalloc(cf->pool, s.len + 1);
        if (s.data == NULL) {
            return NGX_CONF_ERROR;
        }

        p = ngx_cpymem(s.data, hmcf->store.data, hmcf->store.len);
        ngx_cpystrn(p, (u_char *) subdirs[i], ngx_strlen(subdirs[i]) + 1);

        path->name = s;
        path->conf_file = cf->conf_file->file.name.data;
        path->line = cf->conf_file->line;

        if (ngx_add_path(cf, &path) != NGX_OK) {
            return NGX_CONF_ERROR;
        }
    }

    return NGX_CONF_OK;
}


/*
 * hsync_feed_types TYPE...: the media types that are feeds, kept as one
 * string of the words joined by spaces, which the core reads and checks
 * (the same words as Apache's HsyncFeedTypes).
 */

static char *
ngx_http_hsync_feed_types(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_hsync_conf_t *hcf = conf;

    u_char      *p;
    size_t       len;
    ngx_str_t   *value;
    ngx_uint_t   i;

    if (hcf->feed_types.data) {
        return "is duplicate";
    }

    value = cf->args->elts;

    len = 0;

    for (i = 1; i < cf->args->nelts; i++) {
        len += value[i].len + 1;
    }

    p = ngx_pnalloc(cf->pool, len);
    if (p == NULL) {
        return NGX_CONF_ERROR;
    }

    hcf->feed_types.data = p;

    for (i = 1; i < cf->args->nelts; i++) {
        if (i > 1) {
            *p++ = ' ';
        }

        p = ngx_cpymem(p, value[i].data, value[i].len);
    }

    hcf->feed_types.len = p - hcf->feed_types.data;

    return NGX_CONF_OK;
}


static void *
ngx_http_hsync_create_main_conf(ngx_conf_t *cf)
{
    ngx_http_hsync_main_conf_t  *hmcf;

    hmcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_hsync_main_conf_t));
    if (hmcf == NULL) {
        return NULL;
    }

    /*
     * set by ngx_pcalloc():
     *
     *     hmcf->store = { 0, NULL };
     */

    hmcf->max_size = NGX_CONF_UNSET;

    return hmcf;
}


static char *
ngx_http_hsync_init_main_conf(ngx_conf_t *cf, void *conf)
{
    ngx_http_hsync_main_conf_t *hmcf = conf;

    if (hmcf->max_size == NGX_CONF_UNSET) {
        hmcf->max_size = HSYNC_STORE_MAX_DEFAULT;
    }

    return NGX_CONF_OK;
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
     *     conf->dict_match = { 0, NULL };
     *     conf->feed_types = { 0, NULL };
     */

    conf->enable = NGX_CONF_UNSET;
    conf->vary = NGX_CONF_UNSET;
    conf->dictionary = NGX_CONF_UNSET;
    conf->feed = NGX_CONF_UNSET;
    conf->feed_implicit = NGX_CONF_UNSET;
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

    char                         msg[NGX_HTTP_HSYNC_MSG_LEN];
    hsync_config                 d;
    ngx_http_hsync_main_conf_t  *hmcf;

    if (hsync_config_default(&d) != HSYNC_OK) {
        return NGX_CONF_ERROR;
    }

    ngx_conf_merge_value(conf->enable, prev->enable, 0);
    ngx_conf_merge_value(conf->vary, prev->vary, d.vary != 0);
    ngx_conf_merge_value(conf->dictionary, prev->dictionary,
                         d.dictionary != 0);
    ngx_conf_merge_str_value(conf->dict_match, prev->dict_match, "");
    ngx_conf_merge_value(conf->feed, prev->feed, d.feed != 0);
    ngx_conf_merge_value(conf->feed_implicit, prev->feed_implicit,
                         d.feed_implicit != 0);

    if (conf->feed_types.data == NULL) {
        conf->feed_types = prev->feed_types;
    }

    ngx_conf_merge_bufs_value(conf->bufs, prev->bufs,
                              (128 * 1024) / ngx_pagesize, ngx_pagesize);

    ngx_conf_merge_size_value(conf->min_length, prev->min_length,
                              (size_t) d.min_length);
    ngx_conf_merge_size_value(conf->max_signature, prev->max_signature,
                              (size_t) d.max_signature);
    ngx_conf_merge_value(conf->level, prev->level, d.level);

    if (ngx_http_merge_types(cf, &conf->types_keys, &conf->types,
                             &prev->types_keys, &prev->types,
                             ngx_http_hsync_default_types)
        != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    conf->core = d;
    conf->core.min_length = conf->min_length;
    conf->core.max_signature = conf->max_signature;
    /* out of int's range is out of the core's too */
    conf->core.level = (int) ngx_min(conf->level,
                                     (ngx_int_t) NGX_MAX_INT32_VALUE);
    conf->core.vary = conf->vary ? 1 : 0;

    /*
     * Dictionaries: the store is the http block's (the core opens it in
     * each worker, once, on first use); without one, the core's check
     * below says what is missing.
     */

    hmcf = ngx_http_conf_get_module_main_conf(cf,
                                              ngx_http_hsync_filter_module);

    conf->core.dictionary = conf->dictionary ? 1 : 0;
    conf->core.store = (const char *) hmcf->store.data;
    conf->core.store_len = hmcf->store.len;
    conf->core.store_max = (uint64_t) (hmcf->max_size == NGX_CONF_UNSET
                                       ? HSYNC_STORE_MAX_DEFAULT
                                       : hmcf->max_size);

    if (conf->dict_match.len) {
        conf->core.dict_match = (const char *) conf->dict_match.data;
        conf->core.dict_match_len = conf->dict_match.len;
    }

    /* feeds: the core's default types unless hsync_feed_types says */

    conf->core.feed = conf->feed ? 1 : 0;
    conf->core.feed_implicit = conf->feed_implicit ? 1 : 0;

    if (conf->feed_types.len) {
        conf->core.feed_types = (const char *) conf->feed_types.data;
        conf->core.feed_types_len = conf->feed_types.len;
    }

    /* the limits, and the words, are the core's (the same for Apache) */

    msg[0] = '\0';

    if (hsync_config_check(&conf->core, msg, sizeof(msg)) != HSYNC_OK) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "hsync: %s",
                           msg[0] ? msg : "invalid configuration");
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_http_hsync_filter_init(ngx_conf_t *cf)
{
    ngx_http_handler_pt        *h;
    ngx_http_core_main_conf_t  *cmcf;

    if (hsync_abi_version() != HSYNC_ABI_VERSION) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "hsync: the core speaks ABI %uD, this module was "
                           "built for ABI %uD",
                           (uint32_t) hsync_abi_version(),
                           (uint32_t) HSYNC_ABI_VERSION);
        return NGX_ERROR;
    }

    /* the dictionary URLs: see ngx_http_hsync_serve_handler for the phase */

    cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_core_module);

    h = ngx_array_push(&cmcf->phases[NGX_HTTP_REWRITE_PHASE].handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    *h = ngx_http_hsync_serve_handler;

    ngx_http_next_header_filter = ngx_http_top_header_filter;
    ngx_http_top_header_filter = ngx_http_hsync_header_filter;

    ngx_http_next_body_filter = ngx_http_top_body_filter;
    ngx_http_top_body_filter = ngx_http_hsync_body_filter;

    return NGX_OK;
}
