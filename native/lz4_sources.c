/* LZ4 and xxHash compiled from the `lz4` dependency's own C sources (include path set in binding.gyp). */
#include "lz4.c"
#include "xxhash.c"
