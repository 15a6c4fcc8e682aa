/* mpctl.http: downloads over libcurl for the firmware catalog.
 *
 *   http.get(url[, opts]) -> result
 *     opts.to             write the body to this file (else result.body holds it)
 *     opts.resume         continue a partial file at opts.to with a Range request (default false);
 *                         retries inside one call always continue what that call wrote
 *     opts.if_range       validator (ETag or HTTP date) for the partial file: a server holding a
 *                         different file then answers 200 and the download restarts cleanly
 *     opts.ca_file        CA bundle to trust instead of the system store (TLS verify stays on)
 *     opts.connect_timeout seconds (default 15); opts.stall_timeout seconds without a byte
 *                         (default 30, CURLOPT_LOW_SPEED_*); opts.timeout whole transfer (0 = none)
 *     opts.retries        extra attempts on transient failures (default 3), opts.backoff first
 *                         pause in seconds (default 1, doubled each time, capped at 30)
 *     opts.progress       function(done, total|nil), called at most every 0.1 s and at the end
 *     opts.on_response    function({status=, etag=?, last_modified=?, length=?}) when a response's
 *                         body starts (each attempt): lets a caller note the validator of a
 *                         partial file before any byte of it is written
 *     opts.max_size       cap for an in-memory body (default 64 MiB)
 *     opts.headers        { "Name: value", ... }
 *   result = { status=, size=, sha256=hex, url=effective, resumed_from=, attempts=, elapsed=,
 *              etag=?, last_modified=?, content_type=?, body=? }
 *
 * Failures raise "http GET URL: what (after N attempts)". Proxies come from the environment, as
 * libcurl does by default; loopback addresses never go through a proxy. */
#include "mpctl.h"

#include <curl/curl.h>
#include <errno.h>
#include <math.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define REQ_MT "mpctl.http_request"
#define DEFAULT_MAX_BODY (64u << 20)

typedef struct {
    CURL *curl;
    struct curl_slist *headers;
    FILE *out;
    char *body;
    size_t body_len, body_cap, body_max;
    lua_State *L;
    int progress_ref;
    int response_ref;
    int error_ref;     /* error raised by the progress callback, re-raised after the transfer */
    curl_off_t offset; /* bytes already in the file when this attempt started */
    int first_write;   /* the next write callback is the first of this attempt */
    int bad_range;     /* server answered 206 for another offset than the one asked */
    int too_big;
    int stalled;       /* our own stall check fired (libcurl's low-speed window is ~6 s wide) */
    int interrupted;   /* a signal stopped the transfer: raised as `interrupted` after it */
    double stall;      /* seconds without a byte before giving up; 0 = never */
    double last_data;  /* monotonic time the byte count last moved */
    curl_off_t last_dlnow;
    double last_progress;
    char *etag;        /* validator of the partial file between attempts */
    char errbuf[CURL_ERROR_SIZE];
} request;

static void req_release(request *r)
{
    if (r->curl) {
        curl_easy_cleanup(r->curl);
        r->curl = NULL;
    }
    curl_slist_free_all(r->headers);
    r->headers = NULL;
    if (r->out) {
        fclose(r->out);
        r->out = NULL;
    }
    free(r->body);
    r->body = NULL;
    free(r->etag);
    r->etag = NULL;
    if (r->L) {
        luaL_unref(r->L, LUA_REGISTRYINDEX, r->progress_ref);
        luaL_unref(r->L, LUA_REGISTRYINDEX, r->response_ref);
        luaL_unref(r->L, LUA_REGISTRYINDEX, r->error_ref);
        r->progress_ref = r->response_ref = r->error_ref = LUA_NOREF;
    }
}

static int req_gc(lua_State *L)
{
    req_release(luaL_checkudata(L, 1, REQ_MT));
    return 0;
}

/* Parses "bytes START-END/TOTAL" and returns START, or -1. */
static curl_off_t content_range_start(CURL *curl)
{
    struct curl_header *h = NULL;
    if (curl_easy_header(curl, "Content-Range", 0, CURLH_HEADER, -1, &h) != CURLHE_OK)
        return -1;
    const char *p = h->value;
    while (*p == ' ')
        p++;
    if (strncmp(p, "bytes", 5) != 0)
        return -1;
    p += 5;
    while (*p == ' ')
        p++;
    char *end = NULL;
    long long start = strtoll(p, &end, 10);
    if (end == p || *end != '-')
        return -1;
    return (curl_off_t)start;
}

static int begin_file_attempt(request *r)
{
    long code = 0;
    curl_easy_getinfo(r->curl, CURLINFO_RESPONSE_CODE, &code);
    if (r->offset > 0 && code == 206 && content_range_start(r->curl) != r->offset) {
        r->bad_range = 1;
        return -1;
    }
    if (r->offset > 0 && code != 206 && code != 0) {
        /* The server sent the whole file (If-Range mismatch or no range support): start over. */
        if (fflush(r->out) != 0 || ftruncate(fileno(r->out), 0) != 0 || fseeko(r->out, 0, SEEK_SET) != 0)
            return -1;
        r->offset = 0;
    }
    return 0;
}

static void set_header_field(lua_State *L, CURL *curl, const char *name, const char *field);

/* Tells opts.on_response about the response whose body is starting; 0 on success. */
static int call_response(request *r)
{
    lua_State *L = r->L;
    long code = 0;
    curl_off_t length = -1;
    curl_easy_getinfo(r->curl, CURLINFO_RESPONSE_CODE, &code);
    curl_easy_getinfo(r->curl, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &length);
    lua_rawgeti(L, LUA_REGISTRYINDEX, r->response_ref);
    lua_createtable(L, 0, 4);
    lua_pushinteger(L, code);
    lua_setfield(L, -2, "status");
    if (length >= 0) {
        lua_pushinteger(L, (lua_Integer)length);
        lua_setfield(L, -2, "length");
    }
    set_header_field(L, r->curl, "ETag", "etag");
    set_header_field(L, r->curl, "Last-Modified", "last_modified");
    if (lua_pcall(L, 1, 0, 0) != LUA_OK) {
        r->error_ref = luaL_ref(L, LUA_REGISTRYINDEX);
        return -1;
    }
    return 0;
}

static size_t on_write(char *data, size_t size, size_t n, void *ud)
{
    request *r = ud;
    size_t len = size * n;
    if (r->first_write) {
        r->first_write = 0;
        if (r->out && begin_file_attempt(r) != 0)
            return 0;
        if (r->response_ref != LUA_NOREF && call_response(r) != 0)
            return 0;
    }
    if (r->out)
        return fwrite(data, 1, len, r->out) == len ? len : 0;
    if (r->body_len + len > r->body_max) {
        r->too_big = 1;
        return 0;
    }
    if (r->body_len + len > r->body_cap) {
        size_t cap = r->body_cap ? r->body_cap : 16384;
        while (cap < r->body_len + len)
            cap *= 2;
        char *nb = realloc(r->body, cap);
        if (nb == NULL)
            return 0;
        r->body = nb;
        r->body_cap = cap;
    }
    memcpy(r->body + r->body_len, data, len);
    r->body_len += len;
    return len;
}

static int call_progress(request *r, curl_off_t done, curl_off_t total)
{
    lua_State *L = r->L;
    lua_rawgeti(L, LUA_REGISTRYINDEX, r->progress_ref);
    lua_pushinteger(L, (lua_Integer)done);
    if (total > 0)
        lua_pushinteger(L, (lua_Integer)total);
    else
        lua_pushnil(L);
    if (lua_pcall(L, 2, 0, 0) != LUA_OK) {
        r->error_ref = luaL_ref(L, LUA_REGISTRYINDEX);
        return 1;
    }
    return 0;
}

static int on_progress(void *ud, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal, curl_off_t ulnow)
{
    (void)ultotal;
    (void)ulnow;
    request *r = ud;
    double now = mpctl_now();
    /* libcurl calls this at least once a second while it waits (and on every chunk): the one
     * place a blocking transfer can notice Ctrl-C. Aborting leaves the file as it is, so the
     * part already downloaded stays for a resume. */
    if (mpctl_interrupt_due()) {
        r->interrupted = 1;
        return 1;
    }
    if (dlnow != r->last_dlnow) {
        r->last_dlnow = dlnow;
        r->last_data = now;
    } else if (r->stall > 0 && now - r->last_data > r->stall) {
        r->stalled = 1;
        return 1;
    }
    if (r->progress_ref == LUA_NOREF)
        return 0;
    if (now - r->last_progress < 0.1)
        return 0;
    r->last_progress = now;
    return call_progress(r, r->offset + dlnow, dltotal > 0 ? r->offset + dltotal : 0);
}

/* A number option in 0..max: bounded so that the conversions to libcurl's milliseconds, an
 * attempt count and a byte cap cannot overflow (math.huge included). */
static double opt_number(lua_State *L, int t, const char *k, double def, double max)
{
    lua_getfield(L, t, k);
    double v = lua_isnil(L, -1) ? def : luaL_checknumber(L, -1);
    lua_pop(L, 1);
    if (!(v >= 0 && v <= max))
        luaL_error(L, "http.get: %s must be a number from 0 to %I", k, (lua_Integer)max);
    return v;
}

#define MAX_SECONDS 1e6 /* about 11 days */

static const char *opt_string(lua_State *L, int t, const char *k)
{
    lua_getfield(L, t, k);
    const char *s = lua_isnil(L, -1) ? NULL : luaL_checkstring(L, -1);
    lua_pop(L, 1); /* the string stays alive in the options table */
    return s;
}

static int opt_bool(lua_State *L, int t, const char *k)
{
    lua_getfield(L, t, k);
    int b = lua_toboolean(L, -1);
    lua_pop(L, 1);
    return b;
}

/* Loopback is never reached through a proxy, even when the environment names one: a proxy
 * cannot reach the user's 127.0.0.1 anyway. */
static void set_noproxy(lua_State *L, CURL *curl)
{
    const char *env = getenv("no_proxy");
    if (env == NULL)
        env = getenv("NO_PROXY");
    if (env && strcmp(env, "*") == 0)
        return;
    lua_pushfstring(L, "%s%slocalhost,127.0.0.1,::1", env ? env : "", env && *env ? "," : "");
    curl_easy_setopt(curl, CURLOPT_NOPROXY, lua_tostring(L, -1));
    lua_pop(L, 1); /* libcurl copies option strings */
}

static void add_headers(lua_State *L, request *r, int opts)
{
    lua_getfield(L, opts, "headers");
    if (lua_istable(L, -1)) {
        for (lua_Integer i = 1;; i++) {
            if (lua_rawgeti(L, -1, i) == LUA_TNIL) {
                lua_pop(L, 1);
                break;
            }
            struct curl_slist *n = curl_slist_append(r->headers, luaL_checkstring(L, -1));
            if (n == NULL)
                luaL_error(L, "http.get: out of memory");
            r->headers = n;
            lua_pop(L, 1);
        }
    }
    lua_pop(L, 1);
}

static int retryable(const request *r, CURLcode rc, long status)
{
    if (r->stalled)
        return 1;
    switch (rc) {
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
    case CURLE_COULDNT_CONNECT:
    case CURLE_OPERATION_TIMEDOUT:
    case CURLE_PARTIAL_FILE:
    case CURLE_RECV_ERROR:
    case CURLE_SEND_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
        return 1;
    case CURLE_HTTP_RETURNED_ERROR:
        return status >= 500 || status == 408 || status == 429;
    default:
        return 0;
    }
}

static void push_failure(lua_State *L, request *r, CURLcode rc, long status, double stall)
{
    if (rc == CURLE_HTTP_RETURNED_ERROR)
        lua_pushfstring(L, "HTTP %d", (int)status);
    else if (r->stalled || (rc == CURLE_OPERATION_TIMEDOUT && strstr(r->errbuf, "too slow") != NULL))
        lua_pushfstring(L, "stalled: no data for %f s", (lua_Number)stall);
    else if (r->bad_range)
        lua_pushstring(L, "server resumed at another offset than asked (Content-Range mismatch)");
    else if (r->too_big)
        lua_pushfstring(L, "response larger than max_size (%d bytes)", (int)r->body_max);
    else if (rc == CURLE_WRITE_ERROR && r->out)
        lua_pushfstring(L, "writing the file: %s", strerror(errno));
    else
        lua_pushfstring(L, "%s%s%s", curl_easy_strerror(rc), r->errbuf[0] ? ": " : "", r->errbuf);
}

/* The kind of a failed transfer. Network trouble (io, eof, timeout, busy) is what callers may
 * retry later or answer from a cache; a server's "no" (not_found, access) and a TLS peer that
 * cannot be trusted (access) are not. */
static const char *failure_kind(const request *r, CURLcode rc, long status)
{
    if (rc == CURLE_HTTP_RETURNED_ERROR) {
        if (status == 404 || status == 410)
            return "not_found";
        if (status == 401 || status == 403)
            return "access";
        if (status == 408)
            return "timeout";
        if (status == 429 || status >= 500)
            return "busy";
        return "io";
    }
    if (r->stalled || rc == CURLE_OPERATION_TIMEDOUT)
        return "timeout";
    if (r->bad_range)
        return "protocol";
    if (r->too_big)
        return "refused";
    switch (rc) {
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
    case CURLE_SSL_INVALIDCERTSTATUS:
        return "access"; /* the server is not who we trust: not a network hiccup */
    case CURLE_GOT_NOTHING:
    case CURLE_PARTIAL_FILE:
        return "eof";
    default:
        return "io"; /* unreachable: cannot resolve or connect, connection lost */
    }
}

static int sha256_file(FILE *f, char hex[65])
{
    unsigned char buf[65536], md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (ctx == NULL || EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1) {
        EVP_MD_CTX_free(ctx);
        return -1;
    }
    size_t n;
    rewind(f);
    while ((n = fread(buf, 1, sizeof buf, f)) > 0)
        EVP_DigestUpdate(ctx, buf, n);
    int ok = !ferror(f) && EVP_DigestFinal_ex(ctx, md, &mdlen) == 1;
    EVP_MD_CTX_free(ctx);
    for (unsigned int i = 0; ok && i < mdlen; i++)
        snprintf(hex + 2 * i, 3, "%02x", md[i]);
    return ok ? 0 : -1;
}

static void sha256_mem(const char *data, size_t len, char hex[65])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    EVP_Digest(data, len, md, &mdlen, EVP_sha256(), NULL);
    for (unsigned int i = 0; i < mdlen; i++)
        snprintf(hex + 2 * i, 3, "%02x", md[i]);
}

static void set_header_field(lua_State *L, CURL *curl, const char *name, const char *field)
{
    struct curl_header *h = NULL;
    if (curl_easy_header(curl, name, 0, CURLH_HEADER, -1, &h) == CURLHE_OK) {
        lua_pushstring(L, h->value);
        lua_setfield(L, -2, field);
    }
}

static void open_output(lua_State *L, request *r, const char *url, const char *to, int append)
{
    r->out = fopen(to, append ? "ab+" : "wb+");
    if (r->out == NULL)
        mpctl_raise(L, mpctl_errno_kind(errno), to, "http GET %s: cannot write %s: %s", url, to, strerror(errno));
    fseeko(r->out, 0, SEEK_END);
    r->offset = ftello(r->out);
}

static void configure(lua_State *L, request *r, int opts, double *stall)
{
    CURL *c = r->curl;
    double connect = opt_number(L, opts, "connect_timeout", 15, MAX_SECONDS);
    *stall = opt_number(L, opts, "stall_timeout", 30, MAX_SECONDS);
    double total = opt_number(L, opts, "timeout", 0, MAX_SECONDS);
    const char *ca = opt_string(L, opts, "ca_file");
    int top = lua_gettop(L);
    const char *version = "dev";
    if (lua_getfield(L, LUA_REGISTRYINDEX, "mpctl.info") == LUA_TTABLE &&
        lua_getfield(L, -1, "version") == LUA_TSTRING)
        version = lua_tostring(L, -1);
    lua_pushfstring(L, "mpctl/%s", version);
    curl_easy_setopt(c, CURLOPT_USERAGENT, lua_tostring(L, -1)); /* libcurl copies it */
    lua_settop(L, top);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, r->errbuf);
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(c, CURLOPT_MAXREDIRS, 10L);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https,file");
    curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_FAILONERROR, 1L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 2L);
    if (ca)
        curl_easy_setopt(c, CURLOPT_CAINFO, ca);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, (long)(connect * 1000));
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)(total * 1000));
    if (*stall > 0) {
        curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L);
        curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, (long)ceil(*stall));
    }
    curl_easy_setopt(c, CURLOPT_ACCEPT_ENCODING, ""); /* gzip pages; identity for ranges */
    set_noproxy(L, c);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_write);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, on_progress);
    curl_easy_setopt(c, CURLOPT_XFERINFODATA, r);
    curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
}

/* One transfer attempt; the file (if any) is positioned at its end. */
static CURLcode perform(lua_State *L, request *r, const char *if_range)
{
    struct curl_slist *hdrs = r->headers, *extra = NULL;
    if (r->out && r->offset > 0 && if_range) {
        lua_pushfstring(L, "If-Range: %s", if_range);
        extra = curl_slist_append(NULL, lua_tostring(L, -1));
        lua_pop(L, 1);
        if (extra == NULL)
            luaL_error(L, "http.get: out of memory");
        extra->next = r->headers; /* borrowed tail, detached again below */
        hdrs = extra;
    }
    curl_easy_setopt(r->curl, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(r->curl, CURLOPT_RESUME_FROM_LARGE, r->out ? r->offset : (curl_off_t)0);
    r->first_write = 1;
    r->bad_range = r->too_big = r->stalled = 0;
    r->last_dlnow = 0;
    r->last_data = mpctl_now();
    r->errbuf[0] = '\0';
    r->body_len = 0;
    CURLcode rc = curl_easy_perform(r->curl);
    if (extra) {
        extra->next = NULL;
        curl_slist_free_all(extra);
    }
    curl_easy_setopt(r->curl, CURLOPT_HTTPHEADER, r->headers);
    if (r->out)
        fflush(r->out);
    return rc;
}

static void push_result(lua_State *L, request *r, const char *url, int attempts, double t0,
                        curl_off_t resumed_from)
{
    long status = 0;
    char *eff = NULL;
    curl_easy_getinfo(r->curl, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_getinfo(r->curl, CURLINFO_EFFECTIVE_URL, &eff);
    char hex[65] = {0};
    lua_newtable(L);
    lua_pushinteger(L, status);
    lua_setfield(L, -2, "status");
    lua_pushstring(L, eff ? eff : url);
    lua_setfield(L, -2, "url");
    lua_pushinteger(L, attempts);
    lua_setfield(L, -2, "attempts");
    lua_pushnumber(L, mpctl_now() - t0);
    lua_setfield(L, -2, "elapsed");
    lua_pushinteger(L, (lua_Integer)resumed_from);
    lua_setfield(L, -2, "resumed_from");
    set_header_field(L, r->curl, "ETag", "etag");
    set_header_field(L, r->curl, "Last-Modified", "last_modified");
    set_header_field(L, r->curl, "Content-Type", "content_type");
    if (r->out) {
        if (fseeko(r->out, 0, SEEK_END) != 0 || sha256_file(r->out, hex) != 0)
            mpctl_raise(L, "io", url, "http GET %s: cannot read back the file: %s", url, strerror(errno));
        fseeko(r->out, 0, SEEK_END);
        lua_pushinteger(L, (lua_Integer)ftello(r->out));
    } else {
        sha256_mem(r->body ? r->body : "", r->body_len, hex);
        lua_pushlstring(L, r->body ? r->body : "", r->body_len);
        lua_setfield(L, -2, "body");
        lua_pushinteger(L, (lua_Integer)r->body_len);
    }
    lua_setfield(L, -2, "size");
    lua_pushstring(L, hex);
    lua_setfield(L, -2, "sha256");
}

static int store_ref(lua_State *L, int opts, const char *field)
{
    lua_getfield(L, opts, field);
    if (lua_isfunction(L, -1))
        return luaL_ref(L, LUA_REGISTRYINDEX);
    lua_pop(L, 1);
    return LUA_NOREF;
}

/* Pushes a to-be-closed request for url configured from the options table at `opts`. */
static request *new_request(lua_State *L, const char *url, int opts)
{
    request *r = lua_newuserdatauv(L, sizeof *r, 0);
    memset(r, 0, sizeof *r);
    r->progress_ref = r->response_ref = r->error_ref = LUA_NOREF;
    luaL_setmetatable(L, REQ_MT);
    lua_toclose(L, -1); /* an error anywhere below releases the handle and closes the file at once */
    r->L = L;
    r->curl = curl_easy_init();
    if (r->curl == NULL)
        luaL_error(L, "http GET %s: cannot initialise libcurl", url);
    r->body_max = (size_t)opt_number(L, opts, "max_size", DEFAULT_MAX_BODY, 1099511627776.0);
    configure(L, r, opts, &r->stall);
    add_headers(L, r, opts);
    curl_easy_setopt(r->curl, CURLOPT_URL, url);
    r->progress_ref = store_ref(L, opts, "progress");
    r->response_ref = store_ref(L, opts, "on_response");
    return r;
}

static int raise_callback_error(lua_State *L, request *r)
{
    lua_rawgeti(L, LUA_REGISTRYINDEX, r->error_ref);
    return lua_error(L);
}

/* Partial file unusable for a resume (416, no ranges, wrong Content-Range): start it over. */
static int needs_restart(const request *r, CURLcode rc, long status)
{
    return r->out && r->offset > 0 &&
           (rc == CURLE_RANGE_ERROR || (rc == CURLE_HTTP_RETURNED_ERROR && status == 416) || r->bad_range);
}

/* Keep what arrived; the next attempt asks for the rest, guarded by the ETag. */
static void keep_partial(request *r)
{
    struct curl_header *h = NULL;
    free(r->etag);
    r->etag = NULL;
    if (curl_easy_header(r->curl, "ETag", 0, CURLH_HEADER, -1, &h) == CURLHE_OK)
        r->etag = strdup(h->value);
    fseeko(r->out, 0, SEEK_END);
    r->offset = ftello(r->out);
}

typedef struct {
    const char *url, *to, *if_range;
    int retries;
    double backoff;
    int attempts;
    curl_off_t resumed_from;
} call;

/* The attempts of one get(): returns on success, raises on the final failure. */
static void transfer(lua_State *L, request *r, call *c)
{
    int restarted = 0;
    for (;;) {
        c->attempts++;
        CURLcode rc = perform(L, r, r->etag ? r->etag : c->if_range);
        if (r->error_ref != LUA_NOREF)
            raise_callback_error(L, r);
        if (r->interrupted) {
            r->interrupted = 0;
            mpctl_check_interrupt(L);
        }
        long status = 0;
        curl_easy_getinfo(r->curl, CURLINFO_RESPONSE_CODE, &status);
        if (rc == CURLE_OK)
            return;
        if (!restarted && needs_restart(r, rc, status)) {
            restarted = 1;
            if (ftruncate(fileno(r->out), 0) != 0)
                mpctl_raise(L, "io", c->to, "http GET %s: cannot truncate %s: %s", c->url, c->to, strerror(errno));
            fseeko(r->out, 0, SEEK_SET);
            r->offset = c->resumed_from = 0;
            c->attempts--; /* not the server's fault: a free retry */
            continue;
        }
        if (!retryable(r, rc, status) || c->attempts > c->retries) {
            push_failure(L, r, rc, status, r->stall);
            mpctl_raise(L, failure_kind(r, rc, status), c->url, "http GET %s: %s (after %d attempt%s)", c->url,
                        lua_tostring(L, -1), c->attempts, c->attempts == 1 ? "" : "s");
        }
        if (r->out)
            keep_partial(r);
        mpctl_sleep_l(L, fmin(c->backoff * pow(2, c->attempts - 1), 30));
    }
}

static int h_get(lua_State *L)
{
    call c = {.url = luaL_checkstring(L, 1)};
    if (lua_isnoneornil(L, 2)) {
        lua_settop(L, 1);
        lua_newtable(L);
    }
    luaL_checktype(L, 2, LUA_TTABLE);
    request *r = new_request(L, c.url, 2);
    c.to = opt_string(L, 2, "to");
    c.if_range = opt_string(L, 2, "if_range");
    c.retries = (int)opt_number(L, 2, "retries", 3, 1000);
    c.backoff = opt_number(L, 2, "backoff", 1, 3600);
    if (c.to)
        open_output(L, r, c.url, c.to, opt_bool(L, 2, "resume"));
    c.resumed_from = r->offset;
    double t0 = mpctl_now();
    transfer(L, r, &c);
    if (r->progress_ref != LUA_NOREF) {
        curl_off_t got = 0;
        curl_easy_getinfo(r->curl, CURLINFO_SIZE_DOWNLOAD_T, &got);
        if (call_progress(r, r->offset + got, r->offset + got))
            return raise_callback_error(L, r);
    }
    push_result(L, r, c.url, c.attempts, t0, c.resumed_from);
    req_release(r);
    return 1;
}

static int h_version(lua_State *L)
{
    lua_pushstring(L, curl_version());
    return 1;
}

int luaopen_mpctl_http(lua_State *L)
{
    static const luaL_Reg fns[] = {
        {"get", h_get},
        {"version", h_version},
        {NULL, NULL},
    };
    curl_global_init(CURL_GLOBAL_DEFAULT);
    static const luaL_Reg meta[] = {{"__gc", req_gc}, {"__close", req_gc}, {NULL, NULL}};
    mpctl_new_class(L, REQ_MT, meta, NULL);
    luaL_newlib(L, fns);
    return 1;
}
