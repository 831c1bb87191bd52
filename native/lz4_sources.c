/* LZ4 and xxHash, vendored in native/lz4/ (BSD 2-clause, see native/lz4/LICENSE; lz4 1.9.x as shipped by the
   `lz4` npm package 0.6.5). The include path is set in binding.gyp. */
#include "lz4.c"
#include "xxhash.c"
