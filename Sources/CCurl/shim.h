#ifndef DRCTL_CCURL_SHIM_H
#define DRCTL_CCURL_SHIM_H
#include <curl/curl.h>

/* curl_easy_setopt/getinfo are variadic and cannot be called from Swift:
   these typed wrappers are the whole reason this header exists. */
typedef size_t (*drctl_curl_data_cb)(char *, size_t, size_t, void *);
typedef int (*drctl_curl_xfer_cb)(void *, curl_off_t, curl_off_t, curl_off_t, curl_off_t);

static inline CURLcode drctl_setopt_long(CURL *h, CURLoption o, long v) { return curl_easy_setopt(h, o, v); }
static inline CURLcode drctl_setopt_off(CURL *h, CURLoption o, curl_off_t v) { return curl_easy_setopt(h, o, v); }
static inline CURLcode drctl_setopt_str(CURL *h, CURLoption o, const char *v) { return curl_easy_setopt(h, o, v); }
static inline CURLcode drctl_setopt_ptr(CURL *h, CURLoption o, void *v) { return curl_easy_setopt(h, o, v); }
static inline CURLcode drctl_setopt_slist(CURL *h, CURLoption o, struct curl_slist *v) { return curl_easy_setopt(h, o, v); }
static inline CURLcode drctl_setopt_data_cb(CURL *h, CURLoption o, drctl_curl_data_cb v) { return curl_easy_setopt(h, o, v); }
static inline CURLcode drctl_setopt_xfer_cb(CURL *h, drctl_curl_xfer_cb v) { return curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, v); }
/* In-memory PEM (CA, client certificate, client key), copied by libcurl: key material from a
   kubeconfig never has to touch the disk. */
static inline CURLcode drctl_setopt_blob(CURL *h, CURLoption o, const void *data, size_t len) {
  struct curl_blob b = { (void *)data, len, CURL_BLOB_COPY };
  return curl_easy_setopt(h, o, &b);
}
static inline CURLcode drctl_getinfo_long(CURL *h, CURLINFO i, long *v) { return curl_easy_getinfo(h, i, v); }
/* A handle's socket as it is opened and closed (CURLINFO_ACTIVESOCKET is only known after a
   transfer): the header callback acknowledges a response head on it at once. */
typedef int (*drctl_curl_sockopt_cb)(void *, curl_socket_t, curlsocktype);
typedef int (*drctl_curl_closesocket_cb)(void *, curl_socket_t);
static inline CURLcode drctl_setopt_sockopt_cb(CURL *h, drctl_curl_sockopt_cb v) { return curl_easy_setopt(h, CURLOPT_SOCKOPTFUNCTION, v); }
static inline CURLcode drctl_setopt_closesocket_cb(CURL *h, drctl_curl_closesocket_cb v) { return curl_easy_setopt(h, CURLOPT_CLOSESOCKETFUNCTION, v); }
#endif
