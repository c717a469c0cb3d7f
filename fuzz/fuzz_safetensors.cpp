// libFuzzer entry point for the safetensors target (bodies in tests/fuzz/targets.cpp).
#include "targets.h"

#include <cstdlib>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    static const bool ready = [] {
        const char* dir = std::getenv("FLASHMOE_SOURCE_DIR");
        flashmoe::fuzz::set_source_dir(dir ? dir : FLASHMOE_SOURCE_DIR);
        return true;
    }();
    (void)ready;
    flashmoe::fuzz::safetensors_header(data, size);
    return 0;
}
