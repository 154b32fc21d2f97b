#ifndef DRCTL_CZLIB_SHIM_H
#define DRCTL_CZLIB_SHIM_H
#include <zlib.h>
/* inflateInit2 is a macro: give Swift a function. */
static inline int drctl_inflate_init2(z_stream *s, int windowBits) { return inflateInit2(s, windowBits); }
#endif
