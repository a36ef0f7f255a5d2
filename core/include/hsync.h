/*
 * hsync.h: the C ABI of the hsync core, for server modules.
 * GENERATED from core/src/ffi.rs by cbindgen (core/cbindgen.toml): do not
 * edit; change ffi.rs and run `HSYNC_BLESS=1 cargo test -p hsync-core --test header`.
 *
 * Memory: a response handle holds the parsed signature and an index of it
 * (21 bytes per block; a 4608-byte signature has at most 2,293 blocks) and
 * under 4 MiB of buffered input and output, plus, while it compresses a
 * literal chunk, a zstd context under 2.25 MiB taken from a pool shared by
 * the process (which keeps at most 4 between frames). It never grows with
 * the body (core/src/limits.rs; measured by core/tests/bounds.rs). With
 * dictionaries on, a response copied into the version store holds up to
 * 256 KiB of it in memory (then a file), a dcz response a zstd context sized
 * to its dictionary and window (pooled too: at most 4 of up to 16 MiB kept),
 * and the process caches prepared dictionaries up to 32 MiB;
 * hsync_cached_bytes() says what all of these hold. CPU: the search is paid from a credit that
 * grows with the body, so no signature costs more than about 1.35 times
 * one that matches nothing (BENCHMARKS.md §7.3). A handle is used by one
 * thread at a time.
 */

#ifndef HSYNC_H
#define HSYNC_H

#include <stddef.h>
#include <stdint.h>

/*
 Version of this ABI. A shim compares `hsync_abi_version()` with the
 `HSYNC_ABI_VERSION` its header defined when it was compiled, and refuses
 to start on a mismatch.
 */
#define HSYNC_ABI_VERSION 4

/*
 The most body bytes a server buffers for `hsync_feed_process`
 (`FEED_MAX_BYTES`, 4 MiB): past it, it sends the held headers
 unchanged, the buffered bytes, then the rest as it comes.
 */
#define HSYNC_FEED_MAX_BYTES (4 << 20)

/*
 Flags of [`hsync_encode`]: the server is flushing.
 */
#define HSYNC_FLUSH 1

/*
 Flags of [`hsync_encode`]: the last piece of the body.
 */
#define HSYNC_LAST 2

/*
 Default bound of the version store (64 MiB).
 */
#define HSYNC_STORE_MAX_DEFAULT (64 << 20)

/*
 The result of every function that can fail: the codec's errors
 ([`crate::Error::code`]) and the ABI's own.
 */
typedef enum hsync_result {
  /*
   Engaged, or done.
   */
  HSYNC_OK = 0,
  /*
   Nothing to do (apply the edits, if any, and send the response as it is).
   */
  HSYNC_DECLINED = 1,
  HSYNC_E_INVALID_ARG = -1,
  HSYNC_E_TRUNCATED = -2,
  HSYNC_E_BAD_MAGIC = -3,
  HSYNC_E_VERSION = -4,
  HSYNC_E_MALFORMED = -5,
  HSYNC_E_TOO_LARGE = -6,
  HSYNC_E_WRONG_BASE = -7,
  HSYNC_E_DIGEST = -8,
  HSYNC_E_COMPRESSION = -9,
  HSYNC_E_IO = -10,
  /*
   A bug in the core was caught at the boundary.
   */
  HSYNC_E_PANIC = -11,
  /*
   A configuration value out of range (`hsync_config_check`).
   */
  HSYNC_E_CONFIG = -12,
} hsync_result;

/*
 What an edit does to the response's header lines.
 */
typedef enum hsync_edit_op {
  /*
   Replace every line of the field with one line of this value (add it if absent).
   */
  HSYNC_EDIT_SET = 1,
  /*
   Remove every line of the field.
   */
  HSYNC_EDIT_REMOVE = 2,
  /*
   Add one line, keeping the field's other lines.
   */
  HSYNC_EDIT_APPEND = 3,
} hsync_edit_op;

/*
 One response: its decision, the edits, and when engaged the body's
 way through the core (an inserted element, a copy into the version
 store, the coding); or a response the core makes itself (a dictionary).
 */
typedef struct hsync_response hsync_response;

/*
 A server's settings. Fill it with [`hsync_config_default`], change what
 the configuration says, and check it with [`hsync_config_check`].
 */
typedef struct hsync_config {
  /*
   Responses with a known length below this are left alone (default 256).
   */
  uint64_t min_length;
  /*
   Largest decoded `Hsync-Signature` accepted, bytes (default 4608; 64 to 65536).
   */
  uint64_t max_signature;
  /*
   zstd level for literal bytes: 0 for the core's default, or 1 to 22.
   */
  int level;
  /*
   Non-zero (the default): responses hsync could apply to name
   `Accept-Encoding, Hsync-Signature` in `Vary` also when hsync was not
   applied, as nginx's `gzip_vary on` does; zero turns that off.
   */
  int vary;
  /*
   Non-zero: compression dictionaries for browsers (RFC 9842 `dcz`),
   with the version store in `store` (default off).
   */
  int dictionary;
  /*
   The version store's directory (absolute; not NUL-terminated),
   shared by the server's workers, which must be able to write it.
   */
  const char *store;
  size_t store_len;
  /*
   The store's bound in bytes (default 64 MiB; each version at most a
   quarter of it, and at most 4 MiB).
   */
  uint64_t store_max;
  /*
   The URL pattern a page announces its dictionary for (`match`);
   NULL: the page's own path.
   */
  const char *dict_match;
  size_t dict_match_len;
  /*
   Non-zero: answer `A-IM: feed` with `226 IM Used` and only the
   entries the reader lacks (docs/protocol.md §8; default off).
   */
  int feed;
  /*
   Non-zero: answer a request without `A-IM` whose `If-None-Match`
   names an older version of a feed with those entries only, in a
   `200` (default off).
   */
  int feed_implicit;
  /*
   The media types that are feeds, space- or comma-separated (not
   NUL-terminated); NULL or empty: `application/atom+xml
   application/rss+xml application/x-rss+xml`.
   */
  const char *feed_types;
  size_t feed_types_len;
} hsync_config;

/*
 One header line: name and value, not NUL-terminated.
 */
typedef struct hsync_field {
  const char *name;
  size_t name_len;
  const char *value;
  size_t value_len;
} hsync_field;

/*
 What the server knows when the response headers are ready.
 */
typedef struct hsync_exchange {
  const char *method;
  size_t method_len;
  /*
   Every request header line, repeated fields as several entries.
   */
  const struct hsync_field *request;
  size_t request_len;
  unsigned int status;
  /*
   The request target (path and query) as the client sent it.
   */
  const char *uri;
  size_t uri_len;
  /*
   Every response header line the server will send.
   */
  const struct hsync_field *response;
  size_t response_len;
  /*
   The response's length when the server keeps it outside its header
   lines (nginx's `content_length_n`), or -1 (then a `Content-Length`
   line is read, if any).
   */
  int64_t content_length;
} hsync_exchange;

/*
 One header edit. The strings belong to the response handle.
 */
typedef struct hsync_edit {
  enum hsync_edit_op op;
  const char *name;
  size_t name_len;
  /*
   Empty for `HSYNC_EDIT_REMOVE`.
   */
  const char *value;
  size_t value_len;
} hsync_edit;

#ifdef __cplusplus
extern "C" {
#endif // __cplusplus

/*
 Fills `cfg` with the defaults.

 # Safety
 `cfg` is NULL or points to a writable `hsync_config`.
 */
enum hsync_result hsync_config_default(struct hsync_config *cfg);

/*
 Checks a configuration: `HSYNC_OK`, or `HSYNC_E_CONFIG` with the
 reason (the same words in both servers) in `msg`.

 # Safety
 `cfg` points to an `hsync_config`; `msg` is NULL or `msg_cap` writable bytes.
 */
enum hsync_result hsync_config_check(const struct hsync_config *cfg, char *msg, size_t msg_cap);

/*
 The ABI version of the linked core (see `HSYNC_ABI_VERSION`).
 */
uint32_t hsync_abi_version(void);

/*
 Bytes the core keeps in this process between requests: its pooled zstd
 contexts (delta and dcz), its prepared dictionaries and the feed
 versions it has parsed. Each is bounded (core/src/limits.rs); a server
 may log it, and `build/soak` tells them from memory that leaks.
 */
uint64_t hsync_cached_bytes(void);

/*
 Decides for one response. Whatever the result, `*out` is a new handle
 (free it with `hsync_response_free`) whose edits the server applies:
 - `HSYNC_OK`: engaged; send the body through `hsync_encode`;
 - `HSYNC_DECLINED`: send the body as it is;
 - negative: the same, and `msg` receives the reason for an info-level
   log line (a malformed or refused signature); never an error status.

 On `HSYNC_E_INVALID_ARG` or `HSYNC_E_PANIC`, `*out` is NULL: send the
 response as it is.

 # Safety
 `cfg` and `x` point to valid structures whose strings are readable;
 `out` is writable; `msg` is NULL or `msg_cap` writable bytes.
 */
enum hsync_result hsync_decide(const struct hsync_config *cfg,
                               const struct hsync_exchange *x,
                               struct hsync_response **out,
                               char *msg,
                               size_t msg_cap);

/*
 The header edits to apply, in order: their count, and in `*edits` an
 array of them that stays valid until `hsync_response_free`.

 # Safety
 `r` is a handle from `hsync_decide` (or NULL); `edits` is writable.
 */
size_t hsync_response_edits(const struct hsync_response *r, const struct hsync_edit **edits);

/*
 Body phase of an engaged response: feeds `in_len` bytes (may be 0) and
 returns in `*out` / `*out_len` the encoded bytes ready so far (possibly
 none; valid until the next call or `hsync_response_free`). With
 `HSYNC_LAST` the delta is completed. A negative result means the delta
 cannot be completed: end the response so that the client sees it
 truncated (close the connection), never a complete-looking body.

 # Safety
 `r` is an engaged handle; `input` points to `input_len` readable bytes;
 `out` and `out_len` are writable.
 */
enum hsync_result hsync_encode(struct hsync_response *r,
                               const uint8_t *input,
                               size_t input_len,
                               unsigned int flags,
                               const uint8_t **out,
                               size_t *out_len);

/*
 Bytes of body in and of delta out so far (0 and 0 for a declined handle).

 # Safety
 `r` is a handle or NULL; `input` and `output` are NULL or writable.
 */
void hsync_stats(const struct hsync_response *r, uint64_t *input, uint64_t *output);

/*
 Writes the ratio of body bytes to delta bytes as "12.34" into `buf`,
 NUL-terminated, and returns its length: 0 (and an empty string, when
 `cap > 0`) when unknown, on a declined handle, or if the core failed.

 # Safety
 `r` is a handle or NULL; `buf` is NULL or `cap` writable bytes.
 */
size_t hsync_ratio(const struct hsync_response *r, char *buf, size_t cap);

/*
 The content coding of an engaged response, NUL-terminated: "hsync",
 "dcz", or "" (left alone, or sent as it is: stored, or given a link),
 for the access log (`$hsync_coding`, `%{hsync_coding}n`); for a handle
 from `hsync_feed_process`, "feed" when the body was truncated, else "".

 # Safety
 `r` is a handle or NULL.
 */
const char *hsync_coding(const struct hsync_response *r);

/*
 Request phase, before any handler: answers the module's own URLs (the
 dictionaries of RFC 9842, served from the version store). `HSYNC_OK`:
 send the response the handle describes (`hsync_response_status`, the
 fields as SET edits, `hsync_response_body`) instead of running the
 location's handler; `HSYNC_DECLINED`: not one of them (or dictionaries
 are off), go on as usual. Only the method and the target are read from
 the exchange.

 # Safety
 As `hsync_decide`.
 */
enum hsync_result hsync_serve(const struct hsync_config *cfg,
                              const struct hsync_exchange *x,
                              struct hsync_response **out);

/*
 The status of a response made by `hsync_serve` or `hsync_feed_process`
 (0 otherwise).

 # Safety
 `r` is a handle or NULL.
 */
unsigned int hsync_response_status(const struct hsync_response *r);

/*
 The body of a response made by `hsync_serve` or `hsync_feed_process`:
 its length, and in `*body` its bytes (valid until `hsync_response_free`).

 # Safety
 `r` is a handle or NULL; `body` is writable.
 */
size_t hsync_response_body(const struct hsync_response *r, const uint8_t **body);

/*
 Feeds, step 1, when the response headers are ready (the same exchange
 as for `hsync_decide`): `HSYNC_OK`: a feed response to hold: keep the
 headers, buffer the body (at most `HSYNC_FEED_MAX_BYTES`; past it, send
 the headers unchanged, the buffered bytes, then the rest) and call
 `hsync_feed_process` at its end; `HSYNC_DECLINED`: not one (feeds off,
 not a GET, a range, not 200, not a feed type, coded, known too long):
 go on as usual. `msg` (NULL or `msg_cap` bytes) receives why, for a
 debug-level log line.

 # Safety
 As `hsync_decide`.
 */
enum hsync_result hsync_feed_check(const struct hsync_config *cfg,
                                   const struct hsync_exchange *x,
                                   char *msg,
                                   size_t msg_cap);

/*
 Feeds, step 2, with the whole body (`body_len` bytes, at most
 `HSYNC_FEED_MAX_BYTES`) and the same exchange as for `hsync_feed_check`.
 `HSYNC_OK`: `*out` is a new handle (free it with `hsync_response_free`):
 send `hsync_response_status` (200, 226 or 304: a 304 has no body) with
 the edits of `hsync_response_edits` applied and `hsync_response_body`
 as the body, its length as `Content-Length`; `hsync_coding` says "feed"
 when the body was truncated. A whole 200 (coding "") may then be coded
 by `hsync_decide` as any response; a truncated one or a 304 must not.
 `msg` receives what was decided, for a debug-level log line. On a
 negative result `*out` is NULL: send the response as it was.

 # Safety
 As `hsync_decide`; `body` points to `body_len` readable bytes (NULL
 when 0).
 */
enum hsync_result hsync_feed_process(const struct hsync_config *cfg,
                                     const struct hsync_exchange *x,
                                     const uint8_t *body,
                                     size_t body_len,
                                     struct hsync_response **out,
                                     char *msg,
                                     size_t msg_cap);

/*
 Frees a handle (NULL is fine).

 # Safety
 `r` is NULL or a handle from `hsync_decide`, not used afterwards.
 */
void hsync_response_free(struct hsync_response *r);

/*
 A static, NUL-terminated description of a result code (any int:
 unknown values give "unknown error").
 */
const char *hsync_strerror(int code);

#ifdef __cplusplus
}  // extern "C"
#endif  // __cplusplus

#endif  /* HSYNC_H */
