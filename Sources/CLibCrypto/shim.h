#ifndef DRCTL_CLIBCRYPTO_SHIM_H
#define DRCTL_CLIBCRYPTO_SHIM_H
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#endif
