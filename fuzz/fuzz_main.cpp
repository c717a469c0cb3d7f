// libFuzzer entry point; fuzz/CMakeLists.txt builds it once per target, naming the target body
// (tests/fuzz/targets.h) in FLASHMOE_FUZZ_TARGET.
#include "targets.h"

#include <cstdlib>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    static const bool ready = [] {
        const char* dir = std::getenv("FLASHMOE_SOURCE_DIR");
        flashmoe::fuzz::set_source_dir(dir ? dir : FLASHMOE_SOURCE_DIR);
        return true;
    }();
    (void)ready;
    flashmoe::fuzz::FLASHMOE_FUZZ_TARGET(data, size);
    return 0;
}
