/*
 * hsync.h — the C ABI of the hsync core, for server modules.
 *
 * One header, one flow, shared by the nginx and the Apache modules so that
 * both servers make exactly the same decisions (all of them are made here):
 *
 *   1. request phase:   hsync_request()  -> HSYNC_OK and a new encoder, or a
 *                        reason to leave the request alone;
 *   2. response phase:  hsync_response() -> HSYNC_OK to engage;
 *                        then set the headers:
 *                          Content-Encoding: hsync
 *                          Vary: <hsync_vary(existing Vary)>
 *                          ETag: <hsync_etag(existing ETag)>   (if there was one)
 *                        and remove Content-Length and Accept-Ranges;
 *   3. body phase:       hsync_encode() for every piece of the body, with
 *                        HSYNC_FLUSH when the server flushes and HSYNC_LAST
 *                        on the last piece; send what it returns;
 *   4. hsync_ratio() for the access log, hsync_encoder_free() at the end.
 *
 * Result codes: HSYNC_OK (0), HSYNC_DECLINED (1: nothing to do, nothing to
 * log), or a negative HSYNC_E_* (something was malformed: serve the ordinary
 * response and log the message at info level). No function unwinds: a
 * panic inside the core returns HSYNC_E_PANIC.
 *
 * Memory: an encoder holds the parsed signature and an index of it (21
 * bytes per block; a 4608-byte signature has at most 2,293 blocks) and
 * under 4 MiB of buffered input and output (five 256 KiB windows, two
 * blocks of at most 128 KiB, a literal chunk and its context), plus, while
 * it compresses a literal chunk, a zstd context under 2.25 MiB taken from a
 * pool shared by the process. It never grows with the body
 * (core/src/limits.rs; measured by core/tests/bounds.rs). CPU: the search
 * is paid from a credit that grows with the body, so no signature costs
 * more than about 1.35 times one that matches nothing (BENCHMARKS.md §7.3).
 * Pointers returned through `out` arguments belong to the encoder and stay
 * valid until the next call of the same function or hsync_encoder_free().
 * An encoder is used by one thread at a time.
 */
#ifndef HSYNC_H
#define HSYNC_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define HSYNC_ABI_VERSION 1

#define HSYNC_OK              0
#define HSYNC_DECLINED        1
#define HSYNC_E_INVALID_ARG  (-1)
#define HSYNC_E_TRUNCATED    (-2)
#define HSYNC_E_BAD_MAGIC    (-3)
#define HSYNC_E_VERSION      (-4)
#define HSYNC_E_MALFORMED    (-5)
#define HSYNC_E_TOO_LARGE    (-6)
#define HSYNC_E_WRONG_BASE   (-7)
#define HSYNC_E_DIGEST       (-8)
#define HSYNC_E_COMPRESSION  (-9)
#define HSYNC_E_IO           (-10)
#define HSYNC_E_PANIC        (-11)

/* Flags for hsync_encode(). */
#define HSYNC_FLUSH 1u
#define HSYNC_LAST  2u

typedef struct hsync_config {
    uint64_t min_length;     /* responses with a known length below this are left alone (default 256) */
    uint64_t max_signature;  /* largest decoded Hsync-Signature accepted, bytes (default 4608) */
    int      level;          /* zstd level for literal bytes; 0 = the core's default */
} hsync_config;

typedef struct hsync_encoder hsync_encoder;

/* Fills *cfg with the defaults. */
void hsync_config_default(hsync_config *cfg);

/*
 * Request phase. `accept_encoding` and `signature` are the raw header values,
 * NULL when the header is absent; `has_range` is non-zero when the request
 * has a Range header. On HSYNC_OK, *out is a new encoder (free it with
 * hsync_encoder_free). Otherwise *out is NULL, and for a negative result
 * `msg` (if not NULL) receives a NUL-terminated reason for the log.
 */
int hsync_request(const hsync_config *cfg,
                  const char *method, size_t method_len,
                  const char *accept_encoding, size_t accept_encoding_len,
                  const char *signature, size_t signature_len,
                  int has_range,
                  hsync_encoder **out,
                  char *msg, size_t msg_cap);

/*
 * Response phase. `content_encoding` and `cache_control` are the response's
 * header values (NULL if absent); `content_length` is -1 when unknown.
 * HSYNC_OK means: engage (set the headers listed above). HSYNC_DECLINED
 * means: leave the response alone (and free the encoder).
 */
int hsync_response(hsync_encoder *e, unsigned status,
                   const char *content_encoding, size_t content_encoding_len,
                   const char *cache_control, size_t cache_control_len,
                   int64_t content_length,
                   char *msg, size_t msg_cap);

/* The Vary value to set, given the existing one (NULL if none). */
int hsync_vary(hsync_encoder *e, const char *existing, size_t existing_len,
               const char **out, size_t *out_len);

/* The ETag value to set, given the existing one; HSYNC_DECLINED if NULL. */
int hsync_etag(hsync_encoder *e, const char *existing, size_t existing_len,
               const char **out, size_t *out_len);

/*
 * Body phase: feeds `in_len` bytes (may be 0) and returns in *out / *out_len
 * the encoded bytes ready so far (possibly none). With HSYNC_LAST the delta
 * is completed; no call may follow except hsync_stats/hsync_ratio/free.
 * A negative result means the delta cannot be completed: abort the response.
 */
int hsync_encode(hsync_encoder *e, const uint8_t *in, size_t in_len, unsigned flags,
                 const uint8_t **out, size_t *out_len);

/* Bytes of body in, bytes of delta out, so far. */
void hsync_stats(const hsync_encoder *e, uint64_t *in, uint64_t *out);

/* Writes the ratio in/out as "12.34" into buf (NUL-terminated); returns its length, 0 if none. */
int hsync_ratio(const hsync_encoder *e, char *buf, size_t cap);

void hsync_encoder_free(hsync_encoder *e);

/* A static, NUL-terminated description of a result code. */
const char *hsync_strerror(int code);

#ifdef __cplusplus
}
#endif

#endif /* HSYNC_H */
